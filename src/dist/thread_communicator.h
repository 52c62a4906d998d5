#pragma once
// Thread backend: N ranks as N threads of one process, for tests (the c10d Gloo-test pattern).
// Ranks meet in a shared ThreadGroup; each collective is two rendezvous: after the first every
// rank reads the others' inputs, after the second it may overwrite its own. Reductions add in
// rank order, so every rank gets bit-identical results. A rank that waits past the timeout
// throws TimeoutError (and the group is broken, so the others fail too instead of hanging); ranks
// that issue different collectives at the same sequence number get a MismatchError.
#include <functional>
#include <memory>

#include "dist/communicator.h"

namespace engram::dist {

class ThreadGroup;

std::shared_ptr<ThreadGroup> make_thread_group(int world);
std::unique_ptr<Communicator> make_thread_communicator(std::shared_ptr<ThreadGroup> group, int rank,
                                                       std::chrono::milliseconds timeout);

// Runs body(comm) on `world` threads, one per rank, and rethrows the first exception a rank threw
// (after all threads have ended).
void run_thread_ranks(int world, std::chrono::milliseconds timeout, const std::function<void(Communicator&)>& body);

}  // namespace engram::dist
