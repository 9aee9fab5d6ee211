// The on-disk cache of TensorRT plans: see cache.ts.
export { AbortError } from './abort'
export { writeFileAtomic } from './atomic-write'
export { EngineCache, UNUSED_DAYS } from './cache'
export { FileLock, processStart } from './file-lock'
export { changedSince, ENGINE_SCHEMA_VERSION, type EngineKeyParts, engineCacheKey, engineFileName, engineKeyParts, hashFile, timingCachePath } from './key'
