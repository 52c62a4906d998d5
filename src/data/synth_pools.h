#pragma once
// Word pools of the synthetic world. Every attribute draws from its own pool, and no value
// appears in two pools, so an answer names its attribute. All values are single words: a wrong
// guess then shares no token with the answer and scores F1 0, not a partial 0.5.
#include <string>
#include <vector>

namespace engram::data::pools {

// Syllables of entity names: names are built from an entity's index, never drawn at random, so
// they are unique; and no syllable string is a pool value.
inline const std::vector<std::string> kSyllables = {
    "ba", "ko", "ri", "ta", "ven", "lo", "mi", "sar", "du", "fe", "gal", "ho", "ix", "jun", "ka", "lem",
    "nor", "op", "pra", "qui", "ros", "sil", "tor", "ul", "vak", "wen", "yor", "zan", "bel", "cor", "dra", "eth",
    "fin", "gor", "hal", "ist", "jor", "kel", "lun", "mor", "nid", "orn", "pel", "rud", "sen", "tam", "ur", "vin"};

inline const std::vector<std::string> kCompanySuffixes = {"Works", "Industries", "Labs", "Foundry", "Trading",
                                                          "Holdings", "Mills", "Forge"};

inline const std::vector<std::string> kCities = {
    "Ardenholm", "Brisvale", "Calloway", "Dunmere", "Elderford", "Fallowmere", "Glenhaven", "Harrowgate",
    "Ivybridge", "Jarrowick", "Kestrelton", "Larkspur", "Marrowby", "Northwick", "Oakhurst", "Pemberly",
    "Quenford", "Ravenmoor", "Saltmarsh", "Thornbury", "Umberlee", "Valemont", "Westerby", "Yarrowdale",
    "Zephyrton", "Ashcombe", "Birchmere", "Coldharbour", "Duskwater", "Emberton", "Foxbury", "Greymouth",
    "Hollowell", "Ironbridge", "Juniper", "Kingsreach", "Lowmoor", "Millhaven", "Netherby", "Orchardton",
    "Pinecrest", "Queensbay", "Redcliff", "Stonehaven", "Tidewater", "Underhill", "Violetmoor", "Windmere",
    "Yewbank", "Amberly"};
inline const std::vector<std::string> kPorts = {
    "Anchorage", "Barnacle", "Coralbay", "Driftmouth", "Ebbtide", "Fogharbour", "Gullcove", "Harbourne",
    "Inletby", "Jettyford", "Keelhaven", "Lighthollow", "Moorings", "Netcaster", "Oystermouth", "Pierwick",
    "Quayside", "Reefpoint", "Shingleby", "Tidemark"};
inline const std::vector<std::string> kJobs = {
    "carpenter", "baker", "surgeon", "architect", "librarian", "pilot", "chemist", "gardener", "tailor",
    "astronomer", "plumber", "journalist", "violinist", "blacksmith", "cartographer", "beekeeper", "dentist",
    "engineer", "fisherman", "geologist", "jeweller", "locksmith", "mechanic", "novelist", "optician",
    "pharmacist", "sculptor", "translator", "veterinarian", "weaver"};
inline const std::vector<std::string> kColours = {
    "crimson", "amber", "teal", "violet", "ochre", "scarlet", "indigo", "turquoise", "magenta", "olive",
    "maroon", "lavender", "cobalt", "saffron", "emerald", "charcoal", "ivory", "coral", "mustard", "burgundy"};
inline const std::vector<std::string> kPets = {"parrot", "tortoise", "ferret", "hamster", "iguana", "goldfish",
                                               "rabbit", "canary", "chinchilla", "hedgehog", "gecko", "beagle",
                                               "terrier", "cockatoo", "axolotl"};
inline const std::vector<std::string> kProducts = {
    "lanterns", "bicycles", "umbrellas", "telescopes", "typewriters", "harmonicas", "kettles", "compasses",
    "skateboards", "barometers", "thermostats", "binoculars", "accordions", "wheelbarrows", "metronomes",
    "sundials", "hammocks", "kayaks", "microscopes", "chandeliers"};
inline const std::vector<std::string> kMascots = {"falcon", "badger", "otter", "lynx", "heron", "bison",
                                                  "stag", "raven", "walrus", "panther", "jackal", "pelican"};
inline const std::vector<std::string> kCargoes = {"copper", "salt", "timber", "cotton", "coffee", "marble",
                                                  "tobacco", "wool", "tin", "sugar", "pepper", "silk",
                                                  "granite", "cinnamon", "zinc"};
inline const std::vector<std::string> kFlagColours = {"black", "white", "green", "blue", "yellow", "orange",
                                                      "purple", "silver", "golden", "brown"};

std::vector<std::string> years(int first, int last);

// Filler and distractor sentences: "<subject> <verb phrase> <place phrase>." Their words are
// not in any value pool either.
inline const std::vector<std::string> kFillerSubjects = {
    "The old bridge", "A quiet market", "The morning train", "A small orchestra", "The town council",
    "A passing storm", "The harbour light", "A wandering poet", "The village school", "An early frost",
    "The river ferry", "A travelling circus", "The night watchman", "A flock of geese", "The museum guide"};
inline const std::vector<std::string> kFillerVerbs = {
    "was repaired", "drew a large crowd", "arrived late", "played for hours", "met in secret",
    "passed without warning", "shone brightly", "told long stories", "closed for the summer",
    "damaged the crops", "ran every hour", "stayed for a week", "kept careful notes", "flew south",
    "explained the paintings"};
inline const std::vector<std::string> kFillerPlaces = {
    "near the square", "after the festival", "during the winter", "beside the canal", "in the valley",
    "before the election", "along the coast", "under a grey sky", "at the edge of the forest",
    "throughout the decade", "on market day", "across the hills", "by the old mill", "late in autumn",
    "for the first time"};

}  // namespace engram::data::pools
