// Status propagation helpers. Debian 12's Abseil predates
// ABSL_RETURN_IF_ERROR / ASSIGN_OR_RETURN, so the project keeps its own.
#ifndef ALIGNSERVE_KERNELS_STATUS_MACROS_H_
#define ALIGNSERVE_KERNELS_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define ALIGNSERVE_CONCAT_INNER_(a, b) a##b
#define ALIGNSERVE_CONCAT_(a, b) ALIGNSERVE_CONCAT_INNER_(a, b)

// Returns from the current function if `expr` is not OK.
#define RETURN_IF_ERROR(expr)                       \
  do {                                              \
    ::absl::Status _status = (expr);                \
    if (!_status.ok()) return _status;              \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, Foo());` declares x from an OK StatusOr, or
// returns its error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(ALIGNSERVE_CONCAT_(_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return std::move(tmp).status(); \
  lhs = std::move(tmp).value()

#endif  // ALIGNSERVE_KERNELS_STATUS_MACROS_H_
