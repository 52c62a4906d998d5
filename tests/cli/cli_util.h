#pragma once
// Running the real `engram` binary from tests: exit code, output, time.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

namespace cli {

struct Result {
  int code = -1;
  std::string output;  // stdout and stderr together
  double seconds = 0;
};

inline Result run(const std::string& command) {
  Result result;
  auto start = std::chrono::steady_clock::now();
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return result;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), n);
  int status = pclose(pipe);
  result.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

const std::string kEngram = ENGRAM_BIN;
const std::string kMpirun = std::string(MPIEXEC) + " --oversubscribe -np ";

inline std::string write_temp(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Runs `job` + `out` in the background until the checkpoint `checkpoint` (e.g. "step_00000100") is
// committed in out/checkpoints, then sends it `signal` after `delay` seconds; returns what the
// shell's wait saw.
inline Result interrupt(const std::string& job, const std::string& out, const std::string& checkpoint,
                        const std::string& signal, const std::string& delay) {
  const std::string marker = out + "/checkpoints/" + checkpoint + ".done";
  return run("(" + job + out + " & pid=$!; while kill -0 $pid 2>/dev/null && [ ! -e " + marker +
             " ]; do sleep 0.05; done; sleep " + delay + "; kill -" + signal + " $pid; wait $pid)");
}

// A tiny synthetic world (400 entities) and a tiny base LM pretrained for 2 steps, all under
// `dir`, with base.model and stream.test pointing at them: what the method commands' tests share.
inline std::string tiny_world_sets(const std::string& dir) {
  return " --set synth.entities=400 --set synth.out_dir=" + dir + "/data --set tokenizer.input=" + dir +
         "/data/corpus.txt --set tokenizer.model=" + dir + "/tok.model --set tokenizer.vocab_size=400" +
         " --set pretrain.data=[" + dir + "/data/pretrain.jsonl] --set pretrain.eval_data=" + dir +
         "/data/valid.jsonl --set pretrain.out_dir=" + dir + "/base --set pretrain.eval_questions=4" +
         " --set model.d_model=32 --set model.n_layers=1 --set model.n_heads=2 --set model.d_ff=64" +
         " --set train.micro_batch=4 --set train.steps=2 --set train.log_every=1" + " --set base.model=" + dir +
         "/base --set stream.test=" + dir + "/data/test.jsonl";
}

// A tiny MAC over the tiny world (tools/tiny_world.sh's tiny_mac_sets): two 1-block T5s of width
// 32, one aggregator block, 2 summary tokens, meta-trained on dir/data/train.jsonl into dir/mac.
inline std::string tiny_mac_sets(const std::string& dir) {
  std::string sets = " --set mac.out_dir=" + dir + "/mac --set stream.train=[" + dir +
                     "/data/train.jsonl] --set mac.summary_tokens=2 --set mac.aggregator.blocks=1"
                     " --set mac.aggregator.heads=2 --set mac.aggregator.head_dim=8 --set mac.slot_hidden=16"
                     " --set mac.doc_tokens=64 --set mac.question_tokens=24 --set mac.qa_tokens=40"
                     " --set mac.train.micro_batch=4";
  for (const char* part : {"amortizer", "question"})
    for (const char* kv : {"d_model=32", "d_kv=8", "d_ff=32", "layers=1", "decoder_layers=1", "heads=2"})
      sets += std::string(" --set mac.") + part + "." + kv;
  return sets;
}

}  // namespace cli
