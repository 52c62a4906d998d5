#pragma once
// LongMem in the shared evaluation (eval/contender.h): absorbing the stream writes its documents
// ("Context: <text>", one token stream, in segments of longmem.seq_len) into the memory through
// the frozen backbone, with no training; answering reads the question alone ("Question: q Answer:")
// with the memory (the SideNet of longmem.out_dir/sidenet.h5, trained by engram longmem-train).
// The row's memory holds the whole stream; a second row has the memory of longmem.memory_tokens
// (the training size; FIFO keeps the newest documents): F1 against memory size.
#include "eval/contender.h"

namespace engram::longmem {

eval::ContenderSpec longmem_contender();

}  // namespace engram::longmem
