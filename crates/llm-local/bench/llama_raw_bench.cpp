// llama-bench's method (pp: one batch of N random tokens; tg: N single-token decodes; a warm-up
// run, then 5 repetitions on a cleared KV cache; no sampling), written against llama.h so it
// can be built from the llama.cpp sources vendored by llama-cpp-sys-2, which lack llama-bench.
// Prints llama-bench's JSON (the fields Baton's bench reads).
// usage: llama-raw-bench MODEL THREADS N_PROMPT N_GEN
#include "llama.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

static void no_log(enum ggml_log_level, const char *, void *) {}

static bool decode_prompt(llama_context * ctx, const llama_vocab * vocab, int n_prompt) {
    const int n_vocab = llama_vocab_n_tokens(vocab);
    std::vector<llama_token> tokens(n_prompt);
    tokens[0] = llama_vocab_bos(vocab);
    for (int i = 1; i < n_prompt; i++) tokens[i] = std::rand() % n_vocab;
    if (llama_decode(ctx, llama_batch_get_one(tokens.data(), n_prompt)) != 0) return false;
    llama_synchronize(ctx);
    return true;
}

static bool decode_gen(llama_context * ctx, const llama_vocab * vocab, int n_gen) {
    const int n_vocab = llama_vocab_n_tokens(vocab);
    llama_token token = llama_vocab_bos(vocab);
    for (int i = 0; i < n_gen; i++) {
        if (llama_decode(ctx, llama_batch_get_one(&token, 1)) != 0) return false;
        llama_synchronize(ctx);
        token = std::rand() % n_vocab;
    }
    return true;
}

int main(int argc, char ** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: %s MODEL THREADS N_PROMPT N_GEN\n", argv[0]);
        return 2;
    }
    const char * path = argv[1];
    const int threads = std::atoi(argv[2]), n_prompt = std::atoi(argv[3]), n_gen = std::atoi(argv[4]);
    const int reps = 5;
    llama_log_set(no_log, nullptr);
    llama_backend_init();
    llama_model * model = llama_model_load_from_file(path, llama_model_default_params());
    if (!model) {
        std::fprintf(stderr, "cannot load %s\n", path);
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_prompt + n_gen;
    cp.n_batch = 2048;
    cp.n_ubatch = 512;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        std::fprintf(stderr, "cannot create a context\n");
        return 1;
    }
    std::printf("[\n");
    const int tests[2][2] = {{n_prompt, 0}, {0, n_gen}};
    for (int t = 0; t < 2; t++) {
        const int np = tests[t][0], ng = tests[t][1];
        // warm-up, as llama-bench
        if (np > 0 && !decode_prompt(ctx, vocab, np)) return 1;
        if (ng > 0 && !decode_gen(ctx, vocab, 1)) return 1;
        std::vector<double> ts;
        for (int r = 0; r < reps; r++) {
            llama_memory_clear(llama_get_memory(ctx), false);
            const int64_t t0 = llama_time_us();
            if (np > 0 && !decode_prompt(ctx, vocab, np)) return 1;
            if (ng > 0 && !decode_gen(ctx, vocab, ng)) return 1;
            const double secs = (llama_time_us() - t0) / 1e6;
            ts.push_back((np + ng) / secs);
        }
        double avg = 0, sd = 0;
        for (double v : ts) avg += v;
        avg /= ts.size();
        for (double v : ts) sd += (v - avg) * (v - avg);
        sd = std::sqrt(sd / (ts.size() - 1));
        std::printf("  {\"n_prompt\": %d, \"n_gen\": %d, \"n_threads\": %d, \"avg_ts\": %.3f, \"stddev_ts\": %.3f}%s\n",
                    np, ng, threads, avg, sd, t == 0 ? "," : "");
    }
    std::printf("]\n");
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
