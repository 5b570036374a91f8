// Types for test/fuzz.test.ts; see oracle.d.ts.

/** [category, weight] pairs the tree cases are drawn from. */
export const TREE_CATEGORIES: readonly (readonly [string, number])[];
/** [category, weight] pairs the model cases are drawn from. */
export const MODEL_CATEGORIES: readonly (readonly [string, number])[];
