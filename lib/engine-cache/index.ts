// The on-disk cache of TensorRT plans: see cache.ts.
export { AbortError } from './abort'
export { writeFileAtomic } from './atomic-write'
export { EngineCache, type EngineBuilder, type EngineCacheOptions, type EngineSidecar, type GetOrBuildOptions, type InvalidateOptions, UNUSED_DAYS } from './cache'
export { FileLock, type LockInfo, type LockOptions, pidAlive, processStart } from './file-lock'
export { canonicalJson, changedSince, checkKeyParts, ENGINE_SCHEMA_VERSION, type EngineKeyParts, engineCacheKey, engineFileName, engineKeyParts, gpuSlug, hashFile, timingCachePath } from './key'
