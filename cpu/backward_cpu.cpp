// BRANCH SCAFFOLDING ONLY (b14): replaced by the real kernel before this branch is merged.
#include "cpu/kernels.h"

namespace alibi::cpu {

void attention_backward(const BackwardArgs&, const ThreadPool&) {
  fail(ALIBI_STATUS_UNSUPPORTED, "backward: not implemented yet");
}

}  // namespace alibi::cpu
