#pragma once
// data.* options: how every command reads dataset files.
#include "data/readers.h"

namespace engram::config {
class Config;
class Schema;
}  // namespace engram::config

namespace engram::data {

void declare_data_options(config::Schema& schema);
// The ReadOptions the data.* keys of `config` ask for; every command that reads datasets uses it.
ReadOptions read_options_from(const config::Config& config);

}  // namespace engram::data
