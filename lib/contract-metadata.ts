// The metadata a model file of a given generation must carry (lib/contract.ts reads it back).
// Every writer — scripts/make-fixture.ts, an export — builds it here, so the keys, the label
// order and the per-generation values cannot drift between writers and the reader.
import { GENERATIONS, META_PREFIX, SCHEMA_VERSION, type Generation } from './contract'
import { GENERATION_CONVENTIONS } from './generations'
import { AU_NAMES, BLENDSHAPE_NAMES, EMOTION_NAMES } from './labels'

/**
 * Returns the prefixed `face_multitask.*` metadata entries for `generation`, in a fixed order
 * (writers that need byte-identical files rely on it). `extra` adds entries such as
 * `{ synthetic: 'true' }`; its keys are prefixed unless they already are. An extra key that
 * would replace a contract key throws: the contract values come from GENERATION_CONVENTIONS only.
 */
export function contractMetadata(generation: Generation, extra: Record<string, string> = {}): Record<string, string> {
  const conv = GENERATION_CONVENTIONS[generation]
  if (!conv) throw new Error(`contractMetadata: unknown generation "${generation}" (expected one of ${GENERATIONS.join(', ')})`)
  const plain: Record<string, string> = {
    schema: SCHEMA_VERSION,
    generation,
    crop: conv.crop,
    resize: conv.resize,
    mesh_space: conv.meshSpace,
    pose_convention: conv.poseConvention,
    gaze_convention: conv.gazeConvention,
    convention_release: conv.conventionRelease,
    heads: conv.heads.join(','),
    au_names: AU_NAMES.join(','),
    emotion_names: EMOTION_NAMES.join(','),
  }
  if (conv.heads.includes('blendshapes')) plain.blendshape_names = BLENDSHAPE_NAMES.join(',')

  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(plain)) out[META_PREFIX + k] = v
  for (const [k, v] of Object.entries(extra)) {
    const key = k.startsWith(META_PREFIX) ? k : META_PREFIX + k
    if (key in out) throw new Error(`contractMetadata: extra key "${key}" would override a contract value`)
    out[key] = v
  }
  return out
}
