/* The Lion step for fp32 tensors on the CPU: one call steps a whole list of tensors.
 *
 * Built once per machine by optim/native.py with the system C compiler and loaded
 * through ctypes. The tensors' elements are split evenly between the threads of one
 * OpenMP region (each thread walks its share across tensor boundaries), so a model of a
 * hundred tensors pays for one parallel region per step, not a hundred.
 *
 * Per element, in this order and with no fused multiply-add (built with
 * -ffp-contract=off), as optim/kernels.py's compiled kernel:
 *     g = grad * grad_sign
 *     c = m * beta1 + g * (1 - beta1)
 *     p = p * (1 - lr * wd) + sign(c) * (-lr)      sign(0) = 0
 *     m = m * beta2 + g * (1 - beta2)
 * A coordinate whose gradient is NaN or infinite keeps its parameter and momentum, and
 * is counted when a counter is given.
 */
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define LANES 8
typedef float vf __attribute__((vector_size(4 * LANES)));
typedef int32_t vi __attribute__((vector_size(4 * LANES)));

#define LOAD(dst, src) memcpy(&(dst), (src), sizeof(vf))
#define STORE(dst, src) memcpy((dst), &(src), sizeof(vf))
/* the counts in one int32 lane stay exact: a lane adds at most this many ones */
#define BLOCK_VECTORS 65536

/* hp: 1 - lr*wd, -lr, beta1, 1 - beta1, beta2, 1 - beta2, grad_sign */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
static int64_t
lion_range(float *restrict param, const float *restrict grad, float *restrict exp_avg,
           int64_t start, int64_t end, const float *hp)
{
    const float decay = hp[0], neg_lr = hp[1], beta1 = hp[2], one_minus_beta1 = hp[3];
    const float beta2 = hp[4], one_minus_beta2 = hp[5], grad_sign = hp[6];
    const vf zero = {0}, one = zero + 1.0f;
    int64_t bad = 0, j = start;
    while (end - j >= LANES) {
        int64_t stop = j + (int64_t)LANES * BLOCK_VECTORS;
        if (stop > end - LANES + 1)
            stop = end - LANES + 1;
        vi bad_lanes = {0};
        for (; j < stop; j += LANES) {
            vf g, m, p;
            LOAD(g, grad + j);
            LOAD(m, exp_avg + j);
            LOAD(p, param + j);
            g = g * grad_sign;
            vf c = m * beta1 + g * one_minus_beta1;
            vf sign = (vf)((vi)(c > zero) & (vi)one) - (vf)((vi)(c < zero) & (vi)one);
            vi ok = (g - g) == zero; /* -1 where finite: inf - inf and NaN - NaN are NaN */
            vf new_p = p * decay + sign * neg_lr;
            vf new_m = m * beta2 + g * one_minus_beta2;
            new_p = (vf)(((vi)new_p & ok) | ((vi)p & ~ok));
            new_m = (vf)(((vi)new_m & ok) | ((vi)m & ~ok));
            STORE(param + j, new_p);
            STORE(exp_avg + j, new_m);
            bad_lanes += ok + 1;
        }
        for (int k = 0; k < LANES; k++)
            bad += bad_lanes[k];
    }
    for (; j < end; j++) {
        float g = grad[j] * grad_sign, m = exp_avg[j], p = param[j];
        float c = m * beta1 + g * one_minus_beta1;
        float sign = (float)(c > 0.0f) - (float)(c < 0.0f);
        if (g - g == 0.0f) {
            param[j] = p * decay + sign * neg_lr;
            exp_avg[j] = m * beta2 + g * one_minus_beta2;
        } else {
            bad++;
        }
    }
    return bad;
}

/* Step n tensors (sizes[i] elements each, contiguous fp32) with nthreads threads; add the
 * number of non-finite gradient values to *nonfinite unless it is NULL. */
void lion_step_f32(int64_t n, float *const *params, const float *const *grads,
                   float *const *exp_avgs, const int64_t *sizes, const float *hp,
                   int64_t *nonfinite, int nthreads)
{
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++)
        total += sizes[i];
    int64_t bad = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) reduction(+ : bad)
#endif
    {
        int threads = 1, thread = 0;
#ifdef _OPENMP
        threads = omp_get_num_threads();
        thread = omp_get_thread_num();
#endif
        /* this thread's share of the elements, on 16-element (64-byte) boundaries */
        int64_t lo = total * thread / threads, hi = total * (thread + 1) / threads;
        lo -= lo % 16;
        hi = thread == threads - 1 ? total : hi - hi % 16;
        int64_t base = 0;
        for (int64_t i = 0; i < n && base < hi; base += sizes[i], i++) {
            int64_t start = lo > base ? lo - base : 0;
            int64_t end = hi - base < sizes[i] ? hi - base : sizes[i];
            if (start < end)
                bad += lion_range(params[i], grads[i], exp_avgs[i], start, end, hp);
        }
    }
    if (nonfinite)
        *nonfinite += bad;
}
