#pragma once
// Local backend: world size 1. Reductions and broadcasts leave the tensor as it is; gathers copy.
#include <memory>

#include "dist/communicator.h"

namespace engram::dist {

std::unique_ptr<Communicator> make_local_communicator(std::chrono::milliseconds timeout);

}  // namespace engram::dist
