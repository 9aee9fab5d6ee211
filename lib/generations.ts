// What each published generation of face_multitask_v2 needs around the network, as the py-feat
// release that ships it does it. The export writes these values into the ONNX metadata; the
// runtime reads them back from the file (lib/contract.ts) and never from this table.
import type { CropMode, Generation, Head, MeshSpace, ResizeMode } from './contract'

export interface GenerationConventions {
  crop: CropMode
  resize: ResizeMode
  meshSpace: MeshSpace
  poseConvention: string
  gazeConvention: string
  conventionRelease: string
  heads: Head[]
}

const BASE_HEADS: Head[] = ['au', 'emotion', 'va', 'gaze', 'mesh', 'pose']

export const GENERATION_CONVENTIONS: Record<Generation, GenerationConventions> = {
  'v2.4': {
    crop: 'stretch', resize: 'center_crop', meshSpace: 'crop224_px',
    poseConvention: 'pitch=-p0,roll=-p2,yaw=+p1', gazeConvention: 'pitch=+g1,yaw=+g0',
    conventionRelease: 'py-feat dev 3128756c', heads: BASE_HEADS,
  },
  'v2.5': {
    crop: 'square', resize: 'antialias_bilinear', meshSpace: 'unit_square',
    poseConvention: 'pitch=+p0,roll=-p2,yaw=+p1', gazeConvention: 'pitch=+g1,yaw=+g0',
    conventionRelease: 'py-feat 2.0.3', heads: [...BASE_HEADS, 'blendshapes'],
  },
  'v2.7': {
    crop: 'square', resize: 'antialias_bilinear', meshSpace: 'unit_square',
    poseConvention: 'pitch=-p0,roll=-p2,yaw=+p1', gazeConvention: 'pitch=-g1,yaw=+g0',
    conventionRelease: 'py-feat 2.1.1', heads: [...BASE_HEADS, 'blendshapes'],
  },
  'v2.8': {
    crop: 'square', resize: 'antialias_bilinear', meshSpace: 'unit_square',
    poseConvention: 'pitch=-p0,roll=-p2,yaw=+p1', gazeConvention: 'pitch=-g1,yaw=+g0',
    conventionRelease: 'py-feat 2.1.5', heads: [...BASE_HEADS, 'blendshapes'],
  },
}
