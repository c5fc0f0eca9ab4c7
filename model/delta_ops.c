// Delta compression (low-rank SVD of the difference from the base) and the closed-form
// multi-concept merge. See model/delta.h; formulas in reference/custom-diffusion.md §9, §11.
#include "model/delta.h"
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "core/log.h"
#include "kernels/kernels.h"

int cd_svd_rank_for_ratio(const float *S, int n, double ratio) {
    double total = 0, explain = 0;
    for (int i = 0; i < n; i++) total += S[i];
    if (!(total > 0)) return 0;
    for (int i = 0; i < n; i++) {
        explain += S[i] / total;
        if (explain > ratio) return i;
    }
    return n;
}

// dW[out, in] -> u[out, r] = U S, v[r, in] = V^T (first r). Returns r (>= 0) or -1.
static int lowrank(const char *name, float *dW, int out, int in, int rank, double ratio,
                   float **u, float **v) {
    int k = out < in ? out : in;
    float *S = cd_malloc(sizeof(float) * k), *U = cd_malloc(sizeof(float) * (size_t)out * k);
    float *VT = cd_malloc(sizeof(float) * (size_t)k * in);
    lapack_int info = LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', out, in, dW, in, S, U, k, VT, in);
    if (info != 0) {
        free(S); free(U); free(VT);
        return cd_err("compress: SVD of '%s' [%d, %d] failed (LAPACK info %d)", name, out, in, (int)info);
    }
    int r = rank > 0 ? (rank < k ? rank : k) : cd_svd_rank_for_ratio(S, k, ratio);
    *u = cd_malloc(sizeof(float) * (size_t)out * (r ? r : 1));
    *v = cd_malloc(sizeof(float) * (size_t)(r ? r : 1) * in);
    for (int i = 0; i < out; i++)
        for (int j = 0; j < r; j++) (*u)[(size_t)i * r + j] = U[(size_t)i * k + j] * S[j];
    memcpy(*v, VT, sizeof(float) * (size_t)r * in);
    free(S); free(U); free(VT);
    return r;
}

static int compress_one(cd_delta *d, int i, cd_weights *base, int rank, double ratio, int *maxr) {
    cd_delta_tensor *t = &d->t[i];
    int out = (int)t->shape[0], in = (int)t->shape[1];
    int64_t sh[2] = {out, in};
    float *w0;
    if (cd_weights_get(base, t->name, 2, sh, &w0)) return cd_errctx("compress %s", d->path ? d->path : "delta");
    if (!t->data) CD_TRY(cd_delta_reconstruct(d, base));
    size_t n = (size_t)out * in;
    float *dW = cd_malloc(sizeof(float) * n);
    for (size_t k = 0; k < n; k++) dW[k] = t->data[k] - w0[k];
    float *u = NULL, *v = NULL;
    int r = lowrank(t->name, dW, out, in, rank, ratio, &u, &v);
    free(dW);
    if (r < 0) return -1;
    free(t->data); t->data = NULL;
    free(t->u); free(t->v);
    t->u = u; t->v = v; t->rank = r;
    if (r > *maxr) *maxr = r;
    return 0;
}

int cd_delta_compress(cd_delta *d, cd_weights *base, int rank, double ratio, int *max_rank) {
    int maxr = 0;
    for (int i = 0; i < d->n; i++) {
        cd_delta_tensor *t = &d->t[i];
        cd_weight *w = cd_weights_find(base, t->name);
        if (w && w->ndim != t->ndim)
            return cd_err("%s: tensor '%s' has %d dimensions, the base model's %d", d->path ? d->path : "delta",
                          t->name, t->ndim, w->ndim);
        if (t->ndim != 2 || (!strstr(t->name, "to_k") && !strstr(t->name, "to_v"))) continue;
        CD_TRY(compress_one(d, i, base, rank, ratio, &maxr));
    }
    int k = 0;   // drop rank-0 tensors (W = W_base)
    for (int i = 0; i < d->n; i++) {
        cd_delta_tensor *t = &d->t[i];
        if (t->ndim == 2 && t->rank == 0 && !t->data) {
            cd_info("compress: %s keeps rank 0 (dropped: the base weight is used)", t->name);
            free(t->name); free(t->u); free(t->v);
            continue;
        }
        d->t[k++] = *t;
    }
    d->n = k;
    d->compression_rank = maxr;
    if (max_rank) *max_rank = maxr;
    if (d->n) return cd_delta_set_base(d, base);
    d->fingerprint[0] = 0;
    return 0;
}

// Solve A[n,n] X[n,nrhs] = B in place (B overwritten by X), row-major double LU. A matrix
// whose reciprocal condition number (1-norm) is below 1e-12 counts as singular.
static int solve(double *A, int n, double *B, int nrhs, const char *what) {
    double anorm = 0;
    for (int j = 0; j < n; j++) {
        double c = 0;
        for (int i = 0; i < n; i++) c += fabs(A[(size_t)i * n + j]);
        if (c > anorm) anorm = c;
    }
    lapack_int *ipiv = cd_malloc(sizeof(lapack_int) * n);
    lapack_int info = LAPACKE_dgetrf(LAPACK_ROW_MAJOR, n, n, A, n, ipiv);
    double rcond = 0;
    if (info == 0) info = LAPACKE_dgecon(LAPACK_ROW_MAJOR, '1', n, A, n, anorm, &rcond);
    if (info == 0 && !(rcond >= 1e-12)) {
        free(ipiv);
        return cd_err("merge: %s is singular (reciprocal condition number %.2g)", what, rcond);
    }
    if (info == 0) info = LAPACKE_dgetrs(LAPACK_ROW_MAJOR, 'N', n, nrhs, A, n, ipiv, B, nrhs);
    free(ipiv);
    if (info > 0) return cd_err("merge: %s is singular (LU pivot %d is zero)", what, (int)info);
    if (info < 0) return cd_err("merge: LAPACK argument %d invalid", (int)-info);
    return 0;
}

int cd_merge_prepare(const float *Creg, int m, const float *C, int s, int in, double ridge, float *P) {
    double *M = cd_calloc((size_t)in * in, sizeof(double));
    for (int r = 0; r < m; r++) {   // M = Creg^T Creg (symmetric; fill the upper half, mirror)
        const float *c = Creg + (size_t)r * in;
        for (int i = 0; i < in; i++) {
            double ci = c[i];
            if (ci == 0) continue;
            for (int j = i; j < in; j++) M[(size_t)i * in + j] += ci * c[j];
        }
    }
    for (int i = 0; i < in; i++) {
        M[(size_t)i * in + i] += ridge;
        for (int j = 0; j < i; j++) M[(size_t)i * in + j] = M[(size_t)j * in + i];
    }
    double *X = cd_malloc(sizeof(double) * (size_t)in * s);   // X[in, s] = M^-1 C^T
    for (int i = 0; i < in; i++)
        for (int j = 0; j < s; j++) X[(size_t)i * s + j] = C[(size_t)j * in + i];
    int rc = solve(M, in, X, s, "the regularisation Gram matrix Creg^T Creg (need more, or more "
                               "varied, regularisation captions, or a ridge)");
    free(M);
    if (rc) { free(X); return -1; }
    double *E = cd_calloc((size_t)s * s, sizeof(double));   // e2 = C M^-1 C^T [s, s]
    for (int a = 0; a < s; a++)
        for (int b = 0; b < s; b++) {
            double acc = 0;
            for (int i = 0; i < in; i++) acc += (double)C[(size_t)a * in + i] * X[(size_t)i * s + b];
            E[(size_t)a * s + b] = acc;
        }
    double *D = cd_malloc(sizeof(double) * (size_t)s * in);   // d = X^T [s, in]
    for (int a = 0; a < s; a++)
        for (int i = 0; i < in; i++) D[(size_t)a * in + i] = X[(size_t)i * s + a];
    free(X);
    rc = solve(E, s, D, in, "C M^-1 C^T (the concepts' target features are linearly dependent)");
    free(E);
    if (rc == 0)
        for (size_t k = 0; k < (size_t)s * in; k++) P[k] = (float)D[k];
    free(D);
    return rc;
}

void cd_merge_apply(float *W, const float *W0, const float *C, const float *V, const float *P,
                    int s, int out, int in) {
    // E1[out, s] = V^T - W0 C^T
    float *E1 = cd_malloc(sizeof(float) * (size_t)out * s);
    for (int o = 0; o < out; o++)
        for (int a = 0; a < s; a++) E1[(size_t)o * s + a] = V[(size_t)a * out + o];
    cd_gemm(0, 1, out, s, in, -1.0f, W0, in, C, in, 1.0f, E1, s);
    memcpy(W, W0, sizeof(float) * (size_t)out * in);
    cd_gemm(0, 0, out, in, s, 1.0f, E1, s, P, in, 1.0f, W, in);
    free(E1);
}
