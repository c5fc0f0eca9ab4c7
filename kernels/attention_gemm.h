// Attention through BLAS GEMM on query blocks (flash-style tiling: scores for at most
// CD_ATTN_QBLOCK query rows are held at a time), same arguments and results as
// cd_attention_fwd / cd_attention_bwd in kernels/kernels.h (lse layout [B,H,Nq] shared, so
// either backward can follow either forward). Used by the UNet, where self-attention has
// 4096 tokens at 512 px and the scalar reference is far from GEMM speed.
#ifndef CD_ATTENTION_GEMM_H
#define CD_ATTENTION_GEMM_H
#define CD_ATTN_QBLOCK 256
void cd_attention_gemm_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                           int B, int H, int Nq, int Nk, int D, float scale);
void cd_attention_gemm_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                           const float *k, const float *v, const float *out, const float *lse,
                           int B, int H, int Nq, int Nk, int D, float scale, int detach_k0);
#endif
