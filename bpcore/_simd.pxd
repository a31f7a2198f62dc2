# The table of elementwise loops (csrc/bp_simd.h), filled for this CPU at import.

from libc.stdint cimport uint32_t, uint64_t

cdef extern from "bp_simd.h":
    uint64_t bp_drop_hash(uint64_t z) noexcept nogil
    uint64_t BP_DROP_STEP
    ctypedef struct bp_act:
        int kind
        double p0, p1
    int bp_act_needs_input(const bp_act *act) noexcept nogil
    ctypedef struct bp_sgd_args:
        double lr, momentum, weight_decay, keep
        int nesterov
    ctypedef struct bp_adam_args:
        double step, inv_sqrt_bc2, beta1, beta2, eps, weight_decay, keep
        int amsgrad
    ctypedef struct bp_gemm_epilogue:
        const void *bias
        void *keep
        const bp_act *act
    ctypedef struct bp_simd_table:
        int level
        int (*sgd_f32)(Py_ssize_t n, float *w, const float *g, float *v,
                        const bp_sgd_args *a) noexcept nogil
        int (*sgd_f64)(Py_ssize_t n, double *w, const double *g, double *v,
                        const bp_sgd_args *a) noexcept nogil
        int (*sgd1_f32)(Py_ssize_t rows, Py_ssize_t n, float *w, const float *x,
                         const float *d, float *v, const bp_sgd_args *a) noexcept nogil
        int (*sgd1_f64)(Py_ssize_t rows, Py_ssize_t n, double *w, const double *x,
                         const double *d, double *v, const bp_sgd_args *a) noexcept nogil
        int (*adam_f32)(Py_ssize_t n, float *w, const float *g, float *m, float *v,
                         float *vmax, const bp_adam_args *a) noexcept nogil
        int (*adam_f64)(Py_ssize_t n, double *w, const double *g, double *m, double *v,
                         double *vmax, const bp_adam_args *a) noexcept nogil
        int (*adam1_f32)(Py_ssize_t rows, Py_ssize_t n, float *w, const float *x,
                          const float *d, float *m, float *v, float *vmax,
                          const bp_adam_args *a) noexcept nogil
        int (*adam1_f64)(Py_ssize_t rows, Py_ssize_t n, double *w, const double *x,
                          const double *d, double *m, double *v, double *vmax,
                          const bp_adam_args *a) noexcept nogil
        double (*sumsq_f32)(Py_ssize_t n, const float *x) noexcept nogil
        double (*sumsq_f64)(Py_ssize_t n, const double *x) noexcept nogil
        void (*outer_f32)(Py_ssize_t n, int k, Py_ssize_t stride, const float *x,
                          const float *D, Py_ssize_t ld, float *g) noexcept nogil
        void (*outer_f64)(Py_ssize_t n, int k, Py_ssize_t stride, const double *x,
                          const double *D, Py_ssize_t ld, double *g) noexcept nogil
        void (*act_f32)(Py_ssize_t n, const float *inp, const float *b, float *out, float *z,
                        const bp_act *act) noexcept nogil
        void (*act_f64)(Py_ssize_t n, const double *inp, const double *b, double *out,
                        double *z, const bp_act *act) noexcept nogil
        void (*dact_f32)(Py_ssize_t n, const float *a, const float *z, const float *d,
                         float *out, const bp_act *act) noexcept nogil
        void (*dact_f64)(Py_ssize_t n, const double *a, const double *z, const double *d,
                         double *out, const bp_act *act) noexcept nogil
        void (*colsum_f32)(Py_ssize_t n, Py_ssize_t rows, const float *D, Py_ssize_t ld,
                           float *out) noexcept nogil
        void (*colsum_f64)(Py_ssize_t n, Py_ssize_t rows, const double *D, Py_ssize_t ld,
                           double *out) noexcept nogil
        void (*drop_f32)(Py_ssize_t n, const float *u, float *out, unsigned char *mask,
                         uint64_t key, uint64_t first, uint32_t threshold,
                         float scale) noexcept nogil
        void (*drop_f64)(Py_ssize_t n, const double *u, double *out, unsigned char *mask,
                         uint64_t key, uint64_t first, uint32_t threshold,
                         double scale) noexcept nogil
        void (*undrop_f32)(Py_ssize_t n, const unsigned char *mask, float scale,
                           float *d) noexcept nogil
        void (*undrop_f64)(Py_ssize_t n, const unsigned char *mask, double scale,
                           double *d) noexcept nogil
        int (*nonfinite_f32)(Py_ssize_t n, const float *x) noexcept nogil
        int (*nonfinite_f64)(Py_ssize_t n, const double *x) noexcept nogil
        # bpcore's GEMMs for a few rows (csrc/bp_gemm.c): nn C = A @ B, nt C = A @ B.T,
        # tn C = A.T @ B, plus C if accumulate, then the epilogue (NULL for none)
        void (*gemm_nn_f32)(int m, int n, int k, const float *A, Py_ssize_t lda, const float *B,
                            Py_ssize_t ldb, int accumulate, float *C, Py_ssize_t ldc,
                            const bp_gemm_epilogue *epi) noexcept nogil
        void (*gemm_nn_f64)(int m, int n, int k, const double *A, Py_ssize_t lda,
                            const double *B, Py_ssize_t ldb, int accumulate, double *C,
                            Py_ssize_t ldc, const bp_gemm_epilogue *epi) noexcept nogil
        void (*gemm_nt_f32)(int m, int n, int k, const float *A, Py_ssize_t lda, const float *B,
                            Py_ssize_t ldb, int accumulate, float *C, Py_ssize_t ldc,
                            const bp_gemm_epilogue *epi) noexcept nogil
        void (*gemm_nt_f64)(int m, int n, int k, const double *A, Py_ssize_t lda,
                            const double *B, Py_ssize_t ldb, int accumulate, double *C,
                            Py_ssize_t ldc, const bp_gemm_epilogue *epi) noexcept nogil
        void (*gemm_tn_f32)(int m, int n, int k, const float *A, Py_ssize_t lda, const float *B,
                            Py_ssize_t ldb, int accumulate, float *C, Py_ssize_t ldc,
                            const bp_gemm_epilogue *epi) noexcept nogil
        void (*gemm_tn_f64)(int m, int n, int k, const double *A, Py_ssize_t lda,
                            const double *B, Py_ssize_t ldb, int accumulate, double *C,
                            Py_ssize_t ldc, const bp_gemm_epilogue *epi) noexcept nogil

cdef bp_simd_table *simd() noexcept nogil
