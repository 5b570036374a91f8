/**
 * rntn's public API: what a front end needs to load a model, parse trees and
 * compute losses and gradients with the native core.
 */
export { compileBatch, compileChunks, type CompiledBatch, type CompileOptions } from './batch';
export { computeMetrics, evaluate, evaluateEnsemble, formatMetrics, type ClassStats, type Metrics } from './evaluate';
export { gradientCheck, lossAndGradient, type GroupCheck, type GradientCheckOptions, type LossAndGradient, type Precision } from './gradient';
export { Model, ParameterLayout, TENSOR_NAMES, tensorShapes, type FloatArray, type InitOptions, type LeafActivation, type ModelConfig, type TensorName } from './model';
export { decodeModel, encodeModel, loadModel, ModelFileError, saveModel } from './model-file';
export {
  blasInfo,
  createWorkspace,
  describeBlas,
  nativeDims,
  weightGradientInputSize,
  weightGradientParts,
  type BlasInfo,
  type NativeDims,
  type NativeWorkspace,
  type Schedule,
} from './native';
export { binarize, predict, predictEnsemble, tokenize, type NodePrediction, type TreePrediction } from './predict';
export { Random } from './random';
export { writeFileAtomic } from './files';
export { decodeSafetensors, encodeSafetensors, SafetensorsError } from './safetensors';
export { syntheticSplits, syntheticTreebank } from './synthetic';
export { AdaGrad, DEFAULT_TRAIN_OPTIONS, NonFiniteError, train, type EpochRecord, type Progress, type TrainHooks, type TrainOptions, type TrainResult } from './train';
export { countNodes, formatTree, isLeaf, leaves, parseTree, parseTrees, readTrees, treeHeight, TreeParseError, type InternalNode, type LeafNode, type TreeNode } from './tree';
export { UNKNOWN_WORD, Vocabulary } from './vocab';
