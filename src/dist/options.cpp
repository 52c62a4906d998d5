#include "dist/options.h"

#include "config/config.h"

namespace engram::dist {

void declare_options(config::Schema& schema) {
  schema.add_string("dist.backend", "auto",
                    "collective backend: auto picks nccl for CUDA devices (when built with NCCL), mpi for "
                    "CPU ranks, local for a single process",
                    {"auto", "mpi", "nccl", "local"});
  schema.add_float("dist.timeout_s", 600,
                   "deadline of every collective in seconds; a stalled one is reported and ends the job", config::Range::at_least(0.1));
  schema.add_int("dist.threads", 0, "intra-op CPU threads per rank; 0 = cores of the node / ranks on the node", config::Range::at_least(0));
  schema.add_float("dist.bucket_mb", 25, "gradient bucket size in MB (one all_reduce per bucket)", config::Range::at_least(0.001));
  schema.add_float("dist.first_bucket_mb", 1, "size of the first gradient bucket in MB (starts communication early)", config::Range::at_least(0.001));
}

}  // namespace engram::dist
