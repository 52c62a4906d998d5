#include "core/allocator.h"

#include <malloc.h>

namespace engram::core {

void keep_large_allocations_in_heap() {
  // 1 GiB: tensors below it come from the heap and are reused; the heap is trimmed only when
  // that much is free at its top.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

}  // namespace engram::core
