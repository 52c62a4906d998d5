#pragma once
// SELF-PARAM in the shared evaluation (eval/contender.h):
//   selfparam  absorbing the stream is one batch injection of all its documents into a copy of
//              the base LM (targets sampled as selfparam.targets says; a target asking one of the
//              stream's questions is dropped and counted); answering is closed book. Zero storage
//              per document: the adapters are merged into the weights. Its row carries locality
//              extras: other test documents read in context, their perplexity and the KL to the
//              base LM on them, before and after.
//   ft_s       FT(S): cross-entropy on the same target sentences, the same optimizer steps.
#include "eval/contender.h"

namespace engram::selfparam {

eval::ContenderSpec selfparam_contender();
eval::ContenderSpec ft_s_contender();

}  // namespace engram::selfparam
