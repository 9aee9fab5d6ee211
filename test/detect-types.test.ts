// The public types as TypeScript users meet them: detect()'s boxes are Box[] for one image and
// Box[][] for an array of images at compile time, as the runtime checks them.
import path from 'node:path'
import ts from 'typescript'
import { expect, it } from 'vitest'

it('detect() refuses, at compile time, boxes shaped for the other overload', () => {
  const file = path.join(__dirname, 'fixtures', 'detect-types.ts')
  const program = ts.createProgram([file], { strict: true, noEmit: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, moduleResolution: ts.ModuleResolutionKind.Node10, esModuleInterop: true, skipLibCheck: true, types: ['node'] })
  const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'))
  expect(problems).toEqual([])
}, 60_000)
