// One name per BLAS routine for both precisions, so the model's math in rntn.h
// is written once as a template: float for training, double for the
// finite-difference gradient check.
#pragma once

#include <cblas.h>

namespace rntn {

// Column-major C = alpha·op(A)·op(B) + beta·C. Every matrix in rntn.h is
// column-major with one column per tree node, which is how BLAS wants it.
inline void gemm(bool transA, bool transB, int m, int n, int k, float alpha, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasColMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, m, n, k,
              alpha, a, lda, b, ldb, beta, c, ldc);
}

inline void gemm(bool transA, bool transB, int m, int n, int k, double alpha, const double* a, int lda,
                 const double* b, int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasColMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, m, n, k,
              alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace rntn

// Declared by OpenBLAS but not by every cblas.h it ships with.
extern "C" {
char* openblas_get_corename(void);
char* openblas_get_config(void);
int openblas_get_num_threads(void);
void openblas_set_num_threads(int);
}
