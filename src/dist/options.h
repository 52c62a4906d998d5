#pragma once
namespace engram::config {
class Schema;
}

namespace engram::dist {

// Declares the dist.* options: backend, timeout_s, threads, bucket_mb, first_bucket_mb.
void declare_options(config::Schema& schema);

}  // namespace engram::dist
