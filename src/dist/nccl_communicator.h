#pragma once
// NCCL backend: CUDA tensors. Compiled whenever the CUDA toolkit with NCCL is found (it links
// without a GPU; it can only run with one).
//
// Stream contract: collectives run on the communicator's own stream. Before each one, an event
// recorded on the compute stream (the CUDA legacy default stream, which LibTorch uses unless told
// otherwise) makes the NCCL stream wait, so inputs are ready without a host sync. Work::wait()
// without a timeout makes the compute stream wait on the collective's end event and returns at
// once; wait(timeout) blocks the host until the end event has fired or the timeout passed.
// Tensors are kept referenced until their collective has ended (allocator safety).
// The watchdog polls pending end events and ncclCommGetAsyncError; on a deadline or an async
// error it aborts the NCCL communicator and the MPI job.
#include <memory>

#include "dist/communicator.h"

namespace engram::dist {

bool nccl_available();        // compiled in
std::string nccl_version();   // "2.x.y", or "off"

// `control` (MPI) carries the unique id from rank 0, barriers and byte broadcasts.
std::unique_ptr<Communicator> make_nccl_communicator(std::shared_ptr<Communicator> control, int device,
                                                     std::chrono::milliseconds timeout);

}  // namespace engram::dist
