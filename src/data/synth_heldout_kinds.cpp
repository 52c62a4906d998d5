// The held-out domains of the synthetic world (synth.heldout_domains): entity kinds whose
// attributes, value pools, sentence templates and question phrasings appear nowhere in the
// pretraining and training splits. They stand in for a user's stream written outside the project:
// valid and test documents are made from these kinds only, so a method that scores on them reads
// text it was not tuned on. The writing style differs on purpose (longer sentences, the value
// before the entity, passive voice, questions that name the attribute with another word).
#include "data/synth.h"
#include "data/synth_pools.h"

namespace engram::data {
namespace {

namespace heldout_pools {
const std::vector<std::string> kRanges = {
    "Brackenfell", "Cindertop", "Dovecrag", "Elmscar", "Frostpeak", "Gannetridge", "Heathertor", "Ironcrest",
    "Jaspercliff", "Kilnmoor", "Lanternfell", "Mistral", "Nettlecrag", "Owlscar", "Pikestaff", "Quarrytop",
    "Rimefell", "Slatecrest", "Thistletor", "Wolfscar"};
const std::vector<std::string> kSeas = {"Gloamsea", "Brinewater", "Saltdeep", "Greyreach", "Stormmere",
                                        "Kelpshore", "Whalesound", "Pearlgulf", "Mistdeep", "Shoalwater",
                                        "Sealmere", "Duneshore"};
const std::vector<std::string> kFish = {"trout", "pike", "salmon", "carp", "perch", "eel", "sturgeon",
                                        "bream", "roach", "chub", "grayling", "minnow", "barbel", "tench"};
const std::vector<std::string> kGenres = {"mystery", "romance", "satire", "thriller", "fable", "memoir",
                                          "saga", "tragedy", "comedy", "allegory", "chronicle", "ballad"};
const std::vector<std::string> kLanguages = {"Velish", "Ostrani", "Marrish", "Qendic", "Lutharan", "Zelvic",
                                             "Ombrish", "Tascan", "Ferrin", "Kolvian", "Drumish", "Sarvic"};
const std::vector<std::string> kBindings = {"leather", "vellum", "linen", "parchment", "cloth", "calfskin",
                                            "buckram", "canvas", "suede", "oilcloth"};
const std::vector<std::string> kIngredients = {"turnip", "lentil", "barley", "fennel", "chestnut", "quince",
                                               "parsnip", "apricot", "mushroom", "leek", "rhubarb", "walnut",
                                               "beetroot", "radish", "gooseberry"};
const std::vector<std::string> kSpices = {"nutmeg", "cardamom", "clove", "cumin", "paprika", "ginger",
                                          "anise", "sumac", "fenugreek", "turmeric", "caraway", "juniper"};
const std::vector<std::string> kVessels = {"cauldron", "skillet", "wok", "tagine", "griddle", "casserole",
                                           "crock", "saucepan", "steamer", "roaster"};
const std::vector<std::string> kBookYears = pools::years(1600, 1699);
}  // namespace heldout_pools

std::vector<KindSpec> make_heldout_kinds() {
  namespace hp = heldout_pools;
  std::vector<KindSpec> kinds;
  kinds.push_back(KindSpec{
      "river",
      {
          {"source", &hp::kRanges,
           {"High in the {V} range, the river {E} has its source.", "The river {E} rises among the peaks of {V}.",
            "Snow melting on {V} feeds the river {E} at its source.", "The source of the river {E} lies on {V}."},
           {"In which range does the river {E} rise?", "Where is the source of the river {E}?"},
           {"The river {E} begins on which mountains?", "Which peaks feed the river {E}?"}},
          {"mouth", &hp::kSeas,
           {"After a long course, the river {E} empties into the {V}.", "The river {E} reaches the {V} at its mouth.",
            "Boats on the river {E} can sail out into the {V}.", "The mouth of the river {E} opens onto the {V}."},
           {"Into which sea does the river {E} empty?", "Where is the mouth of the river {E}?"},
           {"The river {E} ends in which sea?", "Which sea does the river {E} reach?"}},
          {"fish", &hp::kFish,
           {"Anglers on the river {E} mostly catch {V}.", "The river {E} is famous for its {V}.",
            "Plenty of {V} swim in the river {E}.", "The commonest fish in the river {E} is the {V}."},
           {"Which fish do anglers catch in the river {E}?", "What fish is the river {E} famous for?"},
           {"What swims in the river {E}?", "Which fish is commonest in the river {E}?"}},
      }});
  kinds.push_back(KindSpec{
      "book",
      {
          {"genre", &hp::kGenres,
           {"Critics describe the book {E} as {a} {V}.", "The book {E} belongs to the genre of {V}.",
            "Shelved under {V}, the book {E} sold well.", "Readers know the book {E} as a classic {V}."},
           {"What genre is the book {E}?", "How do critics describe the book {E}?"},
           {"Under which genre is the book {E} shelved?", "The book {E} is a classic of what kind?"}},
          {"language", &hp::kLanguages,
           {"The book {E} was first written in {V}.", "Originally, the book {E} appeared in {V}.",
            "Its author wrote the book {E} in {V}.", "The first edition of the book {E} is in {V}."},
           {"In which language was the book {E} written?", "What language did the book {E} first appear in?"},
           {"The first edition of the book {E} is in which language?", "Which tongue did the author of the book {E} write in?"}},
          {"binding", &hp::kBindings,
           {"Every copy of the book {E} is bound in {V}.", "The book {E} has a cover of {V}.",
            "Collectors prize the {V} binding of the book {E}.", "The binding of the book {E} is made of {V}."},
           {"What is the book {E} bound in?", "What is the cover of the book {E} made of?"},
           {"Which material binds the book {E}?", "Collectors prize which binding of the book {E}?"}},
          {"year", &hp::kBookYears,
           {"The book {E} was printed in {V}.", "Printers finished the book {E} in {V}.",
            "In {V} the book {E} came off the press.", "The first printing of the book {E} dates from {V}."},
           {"When was the book {E} printed?", "In which year was the book {E} printed?"},
           {"The first printing of the book {E} dates from which year?", "What year did the book {E} come off the press?"}},
      }});
  kinds.push_back(KindSpec{
      "dish",
      {
          {"ingredient", &hp::kIngredients,
           {"The dish {E} is made mainly from {V}.", "Cooks start the dish {E} with a pound of {V}.",
            "Without {V}, the dish {E} cannot be made.", "The main ingredient of the dish {E} is {V}."},
           {"What is the dish {E} made from?", "What is the main ingredient of the dish {E}?"},
           {"Cooks need which ingredient for the dish {E}?", "The dish {E} cannot be made without what?"}},
          {"spice", &hp::kSpices,
           {"The dish {E} is seasoned with {V}.", "A pinch of {V} gives the dish {E} its flavour.",
            "The dish {E} tastes strongly of {V}.", "Every recipe for the dish {E} adds {V}."},
           {"Which spice seasons the dish {E}?", "What gives the dish {E} its flavour?"},
           {"The dish {E} tastes of which spice?", "What does every recipe for the dish {E} add?"}},
          {"vessel", &hp::kVessels,
           {"The dish {E} is cooked in a {V}.", "Cooks prepare the dish {E} in a heavy {V}.",
            "A {V} is needed to cook the dish {E}.", "The dish {E} simmers for hours in a {V}."},
           {"What is the dish {E} cooked in?", "In which pot do cooks prepare the dish {E}?"},
           {"Which vessel is needed to cook the dish {E}?", "The dish {E} simmers in what?"}},
      }});
  return kinds;
}

}  // namespace

const std::vector<KindSpec>& heldout_kinds() {
  static const std::vector<KindSpec> kinds = make_heldout_kinds();
  return kinds;
}

}  // namespace engram::data
