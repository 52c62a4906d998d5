#pragma once
// Deterministic seeding: every random stream is derived from (base seed, tags...) with splitmix64,
// so rank r's data order or dropout stream never depends on how many ranks ran before.
#include <cstdint>
#include <initializer_list>

namespace engram::core {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// derive_seed(seed, {rank, epoch}) -> a seed for that stream.
inline uint64_t derive_seed(uint64_t base, std::initializer_list<uint64_t> tags) {
  uint64_t s = splitmix64(base);
  for (uint64_t t : tags) s = splitmix64(s ^ splitmix64(t + 0x632BE59BD9B4E019ULL));
  return s;
}

}  // namespace engram::core
