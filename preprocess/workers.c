// Decode/resize worker pool: a FIFO of jobs in, a FIFO of finished jobs out (pthreads), so
// the download loop never waits on image work.
#include "preprocess/pp.h"
#include "core/err.h"
#include <pthread.h>
#include <stdlib.h>

struct pp_pool {
    const pp_opts *o;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pp_job *in_head, *in_tail, *out_head, *out_tail;
    int queued, running, stop, n;
    pthread_t *th;
    void (*notify)(void *);
    void *arg;
};

static void append(pp_job **head, pp_job **tail, pp_job *j) {
    j->next = NULL;
    if (*tail) (*tail)->next = j; else *head = j;
    *tail = j;
}

static pp_job *pop(pp_job **head, pp_job **tail) {
    pp_job *j = *head;
    if (j) { *head = j->next; if (!*head) *tail = NULL; j->next = NULL; }
    return j;
}

static void *worker(void *arg) {
    pp_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && !p->in_head) pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop) break;
        pp_job *j = pop(&p->in_head, &p->in_tail);
        p->queued--;
        p->running++;
        pthread_mutex_unlock(&p->mu);
        pp_process(p->o, j);
        pthread_mutex_lock(&p->mu);
        p->running--;
        append(&p->out_head, &p->out_tail, j);
        pthread_mutex_unlock(&p->mu);
        if (p->notify) p->notify(p->arg);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

pp_pool *pp_pool_new(const pp_opts *o, int n, void (*notify)(void *), void *arg) {
    pp_pool *p = cd_calloc(1, sizeof *p);
    p->o = o;
    p->notify = notify;
    p->arg = arg;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (n < 1) n = 1;
    p->th = cd_calloc((size_t)n, sizeof *p->th);
    for (int i = 0; i < n; i++)
        if (pthread_create(&p->th[i], NULL, worker, p) == 0) p->n++;
    return p;
}

void pp_pool_push(pp_pool *p, pp_job *j) {
    pthread_mutex_lock(&p->mu);
    append(&p->in_head, &p->in_tail, j);
    p->queued++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

pp_job *pp_pool_take(pp_pool *p) {
    pthread_mutex_lock(&p->mu);
    pp_job *j = pop(&p->out_head, &p->out_tail);
    pthread_mutex_unlock(&p->mu);
    return j;
}

int pp_pool_busy(pp_pool *p) {
    pthread_mutex_lock(&p->mu);
    int n = p->queued + p->running;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void pp_pool_free(pp_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++) pthread_join(p->th[i], NULL);
    pp_job *j;
    while ((j = pop(&p->in_head, &p->in_tail))) pp_job_free(j);
    while ((j = pop(&p->out_head, &p->out_tail))) pp_job_free(j);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->th);
    free(p);
}
