// One scratch folder per test file, removed when the file's tests end. Left behind, they add up:
// the export tests write several checkpoints of ~150 MB each per run.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll } from 'vitest'

/** A new folder `fm-NAME-XXXXXX` under the OS temp folder. Call it at a test file's top level (or
 * in a describe block): its removal is an afterAll hook of that scope. */
export function tempDir(name: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `fm-${name}-`))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}
