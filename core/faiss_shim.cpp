// extern "C" shim over FAISS's C++ API (libfaiss.a from Debian's libfaiss-dev 1.7.3).
// Every call catches FAISS and C++ exceptions and reports them through cd_err.
#include "core/faiss.h"

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/utils/distances.h>
#include <omp.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>
#include <unistd.h>

extern "C" {
#include "core/err.h"
}

struct cd_faiss {
    faiss::Index *index;
    std::string factory;
};

// Run body; turn any exception into -1 + "what: message".
#define SHIM_TRY(ctx_, ...)                                                    \
    try {                                                                      \
        __VA_ARGS__;                                                           \
    } catch (const faiss::FaissException &e) {                                 \
        return cd_err("%s: FAISS: %s", ctx_, first_line(e.what()).c_str());    \
    } catch (const std::bad_alloc &) {                                         \
        return cd_err("%s: out of memory", ctx_);                              \
    } catch (const std::exception &e) {                                        \
        return cd_err("%s: %s", ctx_, first_line(e.what()).c_str());           \
    } catch (...) {                                                            \
        return cd_err("%s: unknown C++ exception", ctx_);                      \
    }

// FAISS messages look like "Error in <func> at <file>:<line>: <msg>"; keep the message.
static std::string first_line(const char *m) {
    std::string s(m ? m : "");
    size_t p = s.find(": Error: ");
    if (p != std::string::npos) s = s.substr(p + 9);
    else if (s.rfind("Error in ", 0) == 0) {
        size_t q = s.find(": ", s.find(" at "));
        if (q != std::string::npos) s = s.substr(q + 2);
    }
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

// The IVF index inside an index (directly or under IndexPreTransform), or NULL.
static faiss::IndexIVF *find_ivf(faiss::Index *ix) {
    if (auto *ivf = dynamic_cast<faiss::IndexIVF *>(ix)) return ivf;
    if (auto *pt = dynamic_cast<faiss::IndexPreTransform *>(ix)) return find_ivf(pt->index);
    return nullptr;
}

extern "C" int cd_faiss_new(cd_faiss **out, int d, const char *factory) {
    *out = nullptr;
    if (d <= 0) return cd_err("faiss index '%s': dimension %d must be positive", factory, d);
    std::string what = std::string("faiss index_factory(") + std::to_string(d) + ", '" + factory + "')";
    SHIM_TRY(what.c_str(), {
        faiss::Index *ix = faiss::index_factory(d, factory, faiss::METRIC_INNER_PRODUCT);
        if (faiss::IndexIVF *ivf = find_ivf(ix)) {
            ivf->set_direct_map_type(faiss::DirectMap::Hashtable);   // reconstruct by id
        } else if (!dynamic_cast<faiss::IndexIDMap *>(ix)) {
            auto *m = new faiss::IndexIDMap2(ix);
            m->own_fields = true;
            ix = m;
        }
        *out = new cd_faiss{ix, factory};
    });
    return 0;
}

extern "C" void cd_faiss_free(cd_faiss *ix) {
    if (!ix) return;
    delete ix->index;
    delete ix;
}

extern "C" int cd_faiss_d(const cd_faiss *ix) { return (int)ix->index->d; }
extern "C" int64_t cd_faiss_ntotal(const cd_faiss *ix) { return (int64_t)ix->index->ntotal; }
extern "C" int cd_faiss_is_trained(const cd_faiss *ix) { return ix->index->is_trained ? 1 : 0; }
extern "C" const char *cd_faiss_factory(const cd_faiss *ix) { return ix->factory.c_str(); }

extern "C" int cd_faiss_train(cd_faiss *ix, int64_t n, const float *x) {
    if (ix->index->is_trained) return 0;
    if (n <= 0) return cd_err("faiss train: no training vectors");
    SHIM_TRY("faiss train", ix->index->train((faiss::Index::idx_t)n, x));
    return 0;
}

extern "C" int cd_faiss_add(cd_faiss *ix, int64_t n, const float *x, const int64_t *ids) {
    if (n < 0) return cd_err("faiss add: negative count %lld", (long long)n);
    if (!ix->index->is_trained) return cd_err("faiss add: index '%s' is not trained", ix->factory.c_str());
    std::vector<faiss::Index::idx_t> seq;
    if (!ids) {
        seq.resize(n);
        for (int64_t i = 0; i < n; i++) seq[i] = ix->index->ntotal + i;
    }
    SHIM_TRY("faiss add_with_ids",
             ix->index->add_with_ids((faiss::Index::idx_t)n, x, ids ? (const faiss::Index::idx_t *)ids : seq.data()));
    return 0;
}

static int check_query(const cd_faiss *ix, int64_t nq, int dim, int k, const char *what) {
    if (dim != ix->index->d)
        return cd_err("%s: query dimension %d does not match the index dimension %d", what, dim, (int)ix->index->d);
    if (nq < 0 || k <= 0) return cd_err("%s: bad query count %lld or k %d", what, (long long)nq, k);
    return 0;
}

extern "C" int cd_faiss_search(const cd_faiss *ix, int64_t nq, int dim, const float *q, int k,
                               float *dist, int64_t *ids) {
    CD_TRY(check_query(ix, nq, dim, k, "faiss search"));
    SHIM_TRY("faiss search", ix->index->search((faiss::Index::idx_t)nq, q, (faiss::Index::idx_t)k, dist, (faiss::Index::idx_t *)ids));
    return 0;
}

extern "C" int cd_faiss_search_rec(const cd_faiss *ix, int64_t nq, int dim, const float *q, int k,
                                   float *dist, int64_t *ids, float *rec) {
    CD_TRY(check_query(ix, nq, dim, k, "faiss search_and_reconstruct"));
    SHIM_TRY("faiss search_and_reconstruct", {
        ix->index->search((faiss::Index::idx_t)nq, q, (faiss::Index::idx_t)k, dist, (faiss::Index::idx_t *)ids);
        size_t d = ix->index->d;
        for (int64_t i = 0; i < nq * k; i++) {
            if (ids[i] < 0) memset(rec + i * d, 0, d * sizeof(float));
            else ix->index->reconstruct((faiss::Index::idx_t)ids[i], rec + i * d);
        }
    });
    return 0;
}

extern "C" int cd_faiss_reconstruct(const cd_faiss *ix, int64_t id, float *out) {
    std::string what = "faiss reconstruct(" + std::to_string(id) + ")";
    SHIM_TRY(what.c_str(), ix->index->reconstruct((faiss::Index::idx_t)id, out));
    return 0;
}

extern "C" int cd_faiss_set_params(cd_faiss *ix, const char *params) {
    if (!params || !*params) return 0;
    std::string what = std::string("faiss search parameters '") + params + "'";
    SHIM_TRY(what.c_str(), {
        faiss::ParameterSpace ps;
        ps.set_index_parameters(ix->index, params);
    });
    return 0;
}

extern "C" int cd_faiss_write(const cd_faiss *ix, const char *path) {
    std::string tmp = std::string(path) + ".tmp." + std::to_string(getpid());
    FILE *f = fopen(tmp.c_str(), "wb");
    if (!f) return cd_errno("faiss write: cannot create %s", tmp.c_str());
    try {
        faiss::write_index(ix->index, f);
    } catch (const std::exception &e) {
        fclose(f);
        unlink(tmp.c_str());
        return cd_err("faiss write %s: %s", path, first_line(e.what()).c_str());
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        int e = errno;
        fclose(f);
        unlink(tmp.c_str());
        errno = e;
        return cd_errno("faiss write %s", path);
    }
    fclose(f);
    if (rename(tmp.c_str(), path) != 0) {
        int e = errno;
        unlink(tmp.c_str());
        errno = e;
        return cd_errno("faiss write: rename to %s", path);
    }
    return 0;
}

extern "C" int cd_faiss_read(cd_faiss **out, const char *path, int io_flags) {
    *out = nullptr;
    if (access(path, R_OK) != 0) return cd_errno("faiss index %s", path);
    std::string what = std::string("faiss index ") + path;
    SHIM_TRY(what.c_str(), {
        faiss::Index *ix = faiss::read_index(path, io_flags);
        *out = new cd_faiss{ix, ""};
    });
    return 0;
}

extern "C" void cd_faiss_set_threads(int n) {
    if (n > 0) omp_set_num_threads(n);
}

extern "C" int cd_faiss_get_threads(void) { return omp_get_max_threads(); }

extern "C" int cd_faiss_knn_exact(const float *q, int64_t nq, const float *x, int64_t n, int d, int k,
                                  float *dist, int64_t *ids) {
    if (d <= 0 || k <= 0 || nq < 0 || n < 0) return cd_err("exact k-NN: bad sizes d=%d k=%d", d, k);
    SHIM_TRY("exact k-NN", faiss::knn_inner_product(q, x, (size_t)d, (size_t)nq, (size_t)n, (size_t)k, dist, ids));
    return 0;
}
