#pragma once
// The contenders every comparison needs, on the frozen base LM of base.model:
//   closed_book  the base LM answers from the question alone (the floor: what it already knows)
//   context      the question's document in the prompt (the upper bound of reading it)
//   ft           FT(C): uniform online fine-tuning, one AdamW step (eval.ft_lr) on each document's
//                next-token loss in stream order, on a copy of the base LM; then closed book. With
//                curves: the model as it was after the first n documents (kept at ctx.curve_points).
#include "eval/contender.h"

namespace engram::eval {

ContenderSpec closed_book_contender();
ContenderSpec context_contender();
ContenderSpec ft_contender();

}  // namespace engram::eval
