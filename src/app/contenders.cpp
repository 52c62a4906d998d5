// The contenders of `engram eval`: one line each (docs/architecture.md, "Adding a contender").
#include "app/command.h"
#include "eval/baselines.h"
#include "eval/contender.h"
#include "methods/mac/contender.h"
#include "methods/longmem/contender.h"
#include "methods/selfparam/contender.h"

namespace engram::app {

const eval::ContenderRegistry& builtin_contenders() {
  static const eval::ContenderRegistry registry = [] {
    eval::ContenderRegistry r;
    r.add(eval::closed_book_contender());
    r.add(eval::context_contender());
    r.add(eval::ft_contender());
    r.add(mac::mac_contender());
    r.add(selfparam::selfparam_contender());
    r.add(selfparam::ft_s_contender());
    r.add(longmem::longmem_contender());
    return r;
  }();
  return registry;
}

}  // namespace engram::app
