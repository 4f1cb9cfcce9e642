/* alignserve policy plugin ABI, version 1: the plain C interface through
 * which a decoding policy built outside the tree (a shared object loaded with
 * `--policy-plugin NAME=path.so`) plugs into the engine's policy hooks
 * (engine/decoding_policy.h; DESIGN.md, "The policy hooks contract"). It
 * mirrors DecodingPolicy in C: a plugin is a table of functions over an
 * opaque per-request instance, and the engine reaches back through a table
 * of host callbacks.
 *
 * Entry point. A plugin exports exactly one symbol with default visibility:
 *
 *   int32_t alignserve_policy_plugin_v1(const AlignservePolicyHost* host,
 *                                       AlignservePolicyPlugin* out);
 *
 * The loader (alignment/plugin_policy.h) dlopens the library, looks the
 * symbol up, sets out->struct_size to its sizeof(AlignservePolicyPlugin) and
 * every other field of *out to zero, and calls it once. The plugin fills
 * *out (abi_version = ALIGNSERVE_POLICY_ABI_VERSION, its name and its
 * functions) and returns ALIGNSERVE_POLICY_OK, or an error code (e.g.
 * ALIGNSERVE_POLICY_ERR_VERSION when host->abi_version is not one it
 * supports). A missing symbol, a nonzero return, a different abi_version or
 * a null create/destroy is a load error naming the file.
 *
 * Versioning. The major version is in the entry point's name, so a library
 * built for another major version is refused at dlsym, never called. Within
 * version 1 the structs that carry struct_size (AlignservePolicyHost,
 * AlignservePolicyPlugin, AlignservePolicySpec, AlignservePolicyContext,
 * AlignserveFinalizeSink) only grow at the end: a reader checks struct_size
 * before touching a field added later, and a plugin fills only the fields
 * that fit the struct_size the host gave it. The element structs of the
 * batches (AlignserveLogitsView, AlignserveTokenView, AlignserveSequenceEnd,
 * AlignserveSequenceResult, AlignserveTokenLogprob) are frozen for the whole
 * major version, so arrays of them index the same on both sides; new
 * per-sequence data comes as a new hook or a new major version.
 *
 * Ownership and lifetime. Every pointer the host passes into a call (views,
 * their arrays, strings, the context, the sink, params_json, error buffers)
 * is owned by the host and valid only during that call: copy what must
 * outlive it. Every pointer the plugin hands out (name, the function
 * pointers, boundary_delimiter, an instance) is owned by the plugin: name
 * and functions must stay valid until the library is unloaded (after the
 * last instance is destroyed), boundary_delimiter during the spec call.
 * Strings are UTF-8; those with an explicit length are NOT NUL-terminated.
 *
 * Threading. One instance serves exactly one request. Every hook of an
 * instance runs on the engine thread, never concurrently with another hook
 * of the same instance. Different instances may be created and destroyed on
 * other threads (the front end creates them while parsing a request), so
 * state shared between instances (globals) must be thread-safe.
 *
 * Not in version 1: the Score hook (ctx.Score / OnScores), hidden states,
 * the prompt's token ids and the request seed; they come as later
 * struct_size growth of AlignservePolicyContext plus new optional hooks.
 *
 * Errors. Nothing may unwind across this boundary: a plugin written in C++
 * catches every exception inside each function. A hook returns
 * ALIGNSERVE_POLICY_OK or an error code; after any error the host stops
 * calling the instance's hooks, aborts (prunes) its sequences, finalizes the
 * request with no choice and a "plugin_error" figure, then destroys the
 * instance.
 */
#ifndef ALIGNSERVE_ALIGNMENT_PLUGIN_ABI_H_
#define ALIGNSERVE_ALIGNMENT_PLUGIN_ABI_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ALIGNSERVE_POLICY_ABI_VERSION 1
#define ALIGNSERVE_POLICY_ENTRY_SYMBOL "alignserve_policy_plugin_v1"

/* Status codes returned by plugin functions and host callbacks. */
#define ALIGNSERVE_POLICY_OK 0
#define ALIGNSERVE_POLICY_ERR_INVALID_ARGUMENT 1
#define ALIGNSERVE_POLICY_ERR_NOT_FOUND 2
#define ALIGNSERVE_POLICY_ERR_FAILED_PRECONDITION 3 /* e.g. fork inside on_logits */
#define ALIGNSERVE_POLICY_ERR_RESOURCE_EXHAUSTED 4  /* e.g. over 1024 sequences */
#define ALIGNSERVE_POLICY_ERR_VERSION 5             /* unsupported host ABI */
#define ALIGNSERVE_POLICY_ERR_INTERNAL 6

/* AlignserveTokenView::decision values (engine TokenDecision). */
#define ALIGNSERVE_DECISION_CONTINUE 0
#define ALIGNSERVE_DECISION_STOP 1  /* finish keeping its tokens */
#define ALIGNSERVE_DECISION_ABORT 2 /* prune; its KV blocks are freed this step */
#define ALIGNSERVE_DECISION_PAUSE 3 /* keep its blocks, not scheduled until resume */

/* finish_reason values (engine FinishReason). */
#define ALIGNSERVE_FINISH_NONE 0
#define ALIGNSERVE_FINISH_STOP 1
#define ALIGNSERVE_FINISH_LENGTH 2
#define ALIGNSERVE_FINISH_ABORT 3

/* One request's policy state; defined by the plugin, opaque to the host. */
typedef struct AlignservePolicyInstance AlignservePolicyInstance;

/* Given to the entry point; valid only during that call. */
typedef struct AlignservePolicyHost {
  uint32_t struct_size;
  uint32_t abi_version;  /* ALIGNSERVE_POLICY_ABI_VERSION of the host */
  int32_t max_sequences; /* cap on a group's sequences (1024) */
  int32_t max_delimiter_bytes;
} AlignservePolicyHost;

/* What the instance asks of the engine (engine PolicySpec). The host sets
 * struct_size and the defaults below before calling spec. */
typedef struct AlignservePolicySpec {
  uint32_t struct_size;
  int32_t num_sequences;  /* expand: sequences sharing the prompt, [1, 1024]; default 1 */
  int32_t wants_logits;   /* nonzero: call on_logits; default 0 */
  int32_t top_logprobs;   /* -1: none; k in [0, 20]: logprob and top k in on_tokens */
  int32_t boundary_every; /* boundary every this many output tokens; 0: off */
  /* NUL-terminated, at most 64 bytes; NULL or "": off. Plugin-owned, read
   * (copied) by the host during the spec call only. */
  const char* boundary_delimiter;
} AlignservePolicySpec;

/* One sequence about to be sampled (on_logits). Frozen in version 1. */
typedef struct AlignserveLogitsView {
  int64_t seq_id;
  const int32_t* output_token_ids; /* [num_output_tokens] generated so far */
  int64_t num_output_tokens;
  /* [vocab_size] raw logits of the next token, writable in place (mask with
   * -INFINITY, add a guide score); the sampler reads the row as left. */
  float* logits;
  int32_t vocab_size;
  /* In/out: -1 on entry; set to a token id in [0, vocab_size) to append it
   * without sampling. */
  int32_t force_token;
} AlignserveLogitsView;

typedef struct AlignserveTokenLogprob {
  int32_t token;
  float logprob;
} AlignserveTokenLogprob;

/* One sequence that got a token this step (on_tokens). Frozen in version 1. */
typedef struct AlignserveTokenView {
  int64_t seq_id;
  int64_t parent_seq_id; /* on an expand child's first token; else -1 */
  int32_t token;
  int32_t boundary;      /* nonzero: a boundary (see spec) */
  int32_t finish_reason; /* ALIGNSERVE_FINISH_*: nonzero means its decision is ignored */
  float logprob;         /* spec.top_logprobs >= 0: log-probability of token */
  const AlignserveTokenLogprob* top_logprobs; /* [num_top_logprobs], descending */
  int64_t num_top_logprobs;
  const int32_t* output_token_ids; /* [num_output_tokens], token last */
  int64_t num_output_tokens;
  const char* text_delta; /* [text_delta_len] this token's text; may be empty */
  int64_t text_delta_len;
} AlignserveTokenView;

/* A sequence that finished this step (on_finished). Frozen in version 1. */
typedef struct AlignserveSequenceEnd {
  int64_t seq_id;
  int32_t reason; /* ALIGNSERVE_FINISH_* */
} AlignserveSequenceEnd;

/* A sequence offered to finalize, in creation order. Frozen in version 1. */
typedef struct AlignserveSequenceResult {
  int64_t seq_id;
  const int32_t* output_token_ids; /* [num_output_tokens] */
  int64_t num_output_tokens;
  const char* text; /* [text_len] the completion, stop strings cut */
  int64_t text_len;
  int32_t finish_reason; /* ALIGNSERVE_FINISH_* */
} AlignserveSequenceResult;

/* The engine as one instance's hooks see it (engine PolicyContext), scoped
 * to its request. Valid only during the hook call it is passed to; pass
 * `host` back as the first argument of every callback. The commands (fork,
 * stop, abort, pause, resume) return ALIGNSERVE_POLICY_ERR_FAILED_PRECONDITION
 * inside on_logits, ALIGNSERVE_POLICY_ERR_NOT_FOUND for a sequence that is
 * not an unfinished one of this request, and take effect at once. */
typedef struct AlignservePolicyContext {
  uint32_t struct_size;
  void* host;
  int64_t request_id;
  int64_t step;                              /* engine steps run so far */
  double (*free_block_fraction)(void* host); /* KV blocks allocatable now, [0, 1] */
  /* count children of seq_id sharing its blocks; their ids are written to
   * out_ids [out_capacity >= count]. */
  int32_t (*fork)(void* host, int64_t seq_id, int32_t count, int64_t* out_ids,
                  int32_t out_capacity);
  int32_t (*stop)(void* host, int64_t seq_id);
  int32_t (*abort)(void* host, int64_t seq_id);
  int32_t (*pause)(void* host, int64_t seq_id);
  int32_t (*resume)(void* host, int64_t seq_id); /* OK if it was not paused */
  /* The text generated so far by a sequence of the request, snprintf-style:
   * copies at most capacity - 1 bytes and a NUL into buffer (buffer may be
   * NULL when capacity is 0) and returns the full length in bytes (0 for an
   * unknown id). */
  int64_t (*text)(void* host, int64_t seq_id, char* buffer, int64_t capacity);
} AlignservePolicyContext;

/* Where finalize writes its result; valid only during finalize. */
typedef struct AlignserveFinalizeSink {
  uint32_t struct_size;
  void* host;
  /* Appends a choice; ids not in the group are dropped. No call: the request
   * returns no choice, only the report. */
  void (*choose)(void* host, int64_t seq_id);
  /* Appends a figure to the report; key is NUL-terminated, copied. */
  void (*report)(void* host, const char* key, double value);
} AlignserveFinalizeSink;

/* The plugin's function table, filled by the entry point. create and destroy
 * are required; any hook may be NULL (nothing to do; a NULL finalize returns
 * every sequence not aborted). */
typedef struct AlignservePolicyPlugin {
  uint32_t struct_size; /* set by the host */
  uint32_t abi_version; /* set by the plugin: ALIGNSERVE_POLICY_ABI_VERSION */
  const char* name;     /* NUL-terminated, static; for messages only */

  /* A new instance for one request from its params ([params_len] bytes of a
   * JSON value, usually an object). On error: return nonzero, write a
   * NUL-terminated message (at most error_capacity bytes) into error, leave
   * *out NULL. The host destroys every instance it got. */
  int32_t (*create)(const char* params_json, int64_t params_len, AlignservePolicyInstance** out,
                    char* error, int64_t error_capacity);
  void (*destroy)(AlignservePolicyInstance* instance);
  /* Called once, right after create. */
  int32_t (*spec)(const AlignservePolicyInstance* instance, AlignservePolicySpec* out);

  int32_t (*on_step)(AlignservePolicyInstance* instance, const AlignservePolicyContext* ctx);
  int32_t (*on_logits)(AlignservePolicyInstance* instance, AlignserveLogitsView* views,
                       int64_t count, const AlignservePolicyContext* ctx);
  /* decisions: [count] ALIGNSERVE_DECISION_*, all CONTINUE on entry; the
   * plugin sets the one for views[i] in decisions[i]. */
  int32_t (*on_tokens)(AlignservePolicyInstance* instance, const AlignserveTokenView* views,
                       int64_t count, int32_t* decisions, const AlignservePolicyContext* ctx);
  int32_t (*on_finished)(AlignservePolicyInstance* instance, const AlignserveSequenceEnd* ended,
                         int64_t count, const AlignservePolicyContext* ctx);
  int32_t (*finalize)(AlignservePolicyInstance* instance, const AlignserveSequenceResult* seqs,
                      int64_t count, const AlignserveFinalizeSink* sink);
} AlignservePolicyPlugin;

typedef int32_t (*AlignservePolicyPluginEntryV1)(const AlignservePolicyHost* host,
                                                 AlignservePolicyPlugin* out);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* ALIGNSERVE_ALIGNMENT_PLUGIN_ABI_H_ */
