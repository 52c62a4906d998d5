#pragma once
// SIGTERM and SIGUSR1 (SLURM's pre-timeout signal) only set a flag (async-signal-safe, as CERT
// SIG31-C asks); training loops poll stop_requested() at step boundaries and agree across ranks
// before saving and exiting.
namespace engram::core {

void install_stop_signal_handlers();
bool stop_requested();
int stop_signal();            // the signal number that asked to stop, 0 if none
void clear_stop_request();    // for tests

}  // namespace engram::core
