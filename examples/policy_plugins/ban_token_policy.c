/* ban_token: an example alignserve policy plugin in plain C, built against
 * alignment/plugin_abi.h only (see README.md).
 *
 * Params (a flat JSON object of integers):
 *   token       required, >= 0: the token id this policy never lets through;
 *               on_logits sets its logit to -inf in every row.
 *   n           sequences to expand the request into, [1, 1024]; default 1.
 *   max_len     stop a sequence once it has this many output tokens; 0: off.
 *   fail_after  test hook: on_tokens reports an error once a sequence has
 *               this many tokens, to exercise the host's failure path; 0: off.
 * Finalize returns the sequence with the most tokens (the first of those
 * tied) and reports "masked" (logit rows masked) and "sequences".
 *
 * Threading: no global state; an instance is touched only by its own hooks.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alignment/plugin_abi.h"

struct AlignservePolicyInstance {
  int64_t token;
  int64_t n;
  int64_t max_len;
  int64_t fail_after;
  int64_t masked;
};

static const char* SkipSpace(const char* p, const char* end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) ++p;
  return p;
}

static int SetError(char* error, int64_t capacity, const char* message, const char* key,
                    size_t key_len) {
  if (error != NULL && capacity > 0) {
    snprintf(error, (size_t)capacity, message, (int)key_len, key);
  }
  return ALIGNSERVE_POLICY_ERR_INVALID_ARGUMENT;
}

/* Parses {"key": integer, ...} into the instance; 0 or an error code. */
static int ParseParams(const char* json, int64_t len, struct AlignservePolicyInstance* p,
                       char* error, int64_t capacity) {
  const char* end = json + len;
  const char* c = SkipSpace(json, end);
  if (c == end || *c != '{')
    return SetError(error, capacity, "params must be an object%.*s", "", 0);
  c = SkipSpace(c + 1, end);
  if (c < end && *c == '}') return 0;
  for (;;) {
    if (c == end || *c != '"')
      return SetError(error, capacity, "params: expected a key%.*s", "", 0);
    const char* key = ++c;
    while (c < end && *c != '"' && *c != '\\') ++c;
    if (c == end || *c != '"') return SetError(error, capacity, "params: bad key%.*s", "", 0);
    const size_t key_len = (size_t)(c - key);
    c = SkipSpace(c + 1, end);
    if (c == end || *c != ':') return SetError(error, capacity, "params: expected ':'%.*s", "", 0);
    c = SkipSpace(c + 1, end);
    char number[32];
    size_t digits = 0;
    while (c < end && digits + 1 < sizeof(number) && (*c == '-' || (*c >= '0' && *c <= '9'))) {
      number[digits++] = *c++;
    }
    number[digits] = '\0';
    char* number_end = NULL;
    errno = 0;
    const long long value = strtoll(number, &number_end, 10);
    const char* after = SkipSpace(c, end);
    if (digits == 0 || *number_end != '\0' || errno != 0 || after == end ||
        (*after != ',' && *after != '}')) {
      return SetError(error, capacity, "params.%.*s must be an integer", key, key_len);
    }
    if (key_len == 5 && memcmp(key, "token", 5) == 0) {
      p->token = value;
    } else if (key_len == 1 && key[0] == 'n') {
      p->n = value;
    } else if (key_len == 7 && memcmp(key, "max_len", 7) == 0) {
      p->max_len = value;
    } else if (key_len == 10 && memcmp(key, "fail_after", 10) == 0) {
      p->fail_after = value;
    } else {
      return SetError(error, capacity,
                      "unknown param '%.*s' (ban_token takes token, n, max_len, fail_after)", key,
                      key_len);
    }
    if (*after == '}') return 0;
    c = SkipSpace(after + 1, end);
  }
}

static int32_t Create(const char* params_json, int64_t params_len, AlignservePolicyInstance** out,
                      char* error, int64_t error_capacity) {
  *out = NULL;
  struct AlignservePolicyInstance p = {-1, 1, 0, 0, 0};
  const int status = ParseParams(params_json, params_len, &p, error, error_capacity);
  if (status != 0) return status;
  if (p.token < 0)
    return SetError(error, error_capacity, "params.token is required, >= 0%.*s", "", 0);
  if (p.n < 1 || p.n > 1024)
    return SetError(error, error_capacity, "params.n must be in [1, 1024]%.*s", "", 0);
  if (p.max_len < 0 || p.fail_after < 0) {
    return SetError(error, error_capacity, "params.max_len and fail_after must be >= 0%.*s", "", 0);
  }
  *out = malloc(sizeof(**out));
  if (*out == NULL) return ALIGNSERVE_POLICY_ERR_RESOURCE_EXHAUSTED;
  **out = p;
  return ALIGNSERVE_POLICY_OK;
}

static void Destroy(AlignservePolicyInstance* instance) { free(instance); }

static int32_t Spec(const AlignservePolicyInstance* instance, AlignservePolicySpec* out) {
  out->num_sequences = (int32_t)instance->n;
  out->wants_logits = 1;
  return ALIGNSERVE_POLICY_OK;
}

static int32_t OnLogits(AlignservePolicyInstance* instance, AlignserveLogitsView* views,
                        int64_t count, const AlignservePolicyContext* ctx) {
  for (int64_t i = 0; i < count; ++i) {
    if (instance->token < views[i].vocab_size) {
      views[i].logits[instance->token] = -INFINITY;
      ++instance->masked;
    }
  }
  return ALIGNSERVE_POLICY_OK;
}

static int32_t OnTokens(AlignservePolicyInstance* instance, const AlignserveTokenView* views,
                        int64_t count, int32_t* decisions, const AlignservePolicyContext* ctx) {
  for (int64_t i = 0; i < count; ++i) {
    if (views[i].token == instance->token) return ALIGNSERVE_POLICY_ERR_INTERNAL;
    if (instance->fail_after > 0 && views[i].num_output_tokens >= instance->fail_after) {
      return ALIGNSERVE_POLICY_ERR_INTERNAL;
    }
    if (instance->max_len > 0 && views[i].num_output_tokens >= instance->max_len) {
      decisions[i] = ALIGNSERVE_DECISION_STOP;
    }
  }
  return ALIGNSERVE_POLICY_OK;
}

static int32_t Finalize(AlignservePolicyInstance* instance, const AlignserveSequenceResult* seqs,
                        int64_t count, const AlignserveFinalizeSink* sink) {
  int64_t best = -1;
  for (int64_t i = 0; i < count; ++i) {
    if (seqs[i].finish_reason == ALIGNSERVE_FINISH_ABORT) continue;
    if (best < 0 || seqs[i].num_output_tokens > seqs[best].num_output_tokens) best = i;
  }
  if (best >= 0) sink->choose(sink->host, seqs[best].seq_id);
  sink->report(sink->host, "masked", (double)instance->masked);
  sink->report(sink->host, "sequences", (double)count);
  return ALIGNSERVE_POLICY_OK;
}

__attribute__((visibility("default"))) int32_t alignserve_policy_plugin_v1(
    const AlignservePolicyHost* host, AlignservePolicyPlugin* out) {
  if (host->abi_version != ALIGNSERVE_POLICY_ABI_VERSION) return ALIGNSERVE_POLICY_ERR_VERSION;
  if (out->struct_size < sizeof(AlignservePolicyPlugin)) return ALIGNSERVE_POLICY_ERR_VERSION;
  out->abi_version = ALIGNSERVE_POLICY_ABI_VERSION;
  out->name = "ban_token";
  out->create = Create;
  out->destroy = Destroy;
  out->spec = Spec;
  out->on_logits = OnLogits;
  out->on_tokens = OnTokens;
  out->finalize = Finalize;
  return ALIGNSERVE_POLICY_OK;
}
