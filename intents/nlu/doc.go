// Package nlu owns the intent classifier of `robonet ask`: given one clause
// of a sentence as masked text ("restart SVC on NODES"), it returns every
// intent label with a probability, best first. It also owns the corpus the
// classifier learns from (templates and synonyms in data/, expanded by
// Expand), the trainer (Train, run by `go generate ./intents/nlu`) and the
// embedded model file (model.bin).
//
// It does not mask sentences, extract slots (selectors, services, paths,
// keys, numbers), build plans or decide risk: package intents does that and
// calls Classify with the masked clause. It never touches the network.
//
// # The model
//
// Features are word unigrams and bigrams (with start and end markers) and
// the character 3..5-grams of every word (placeholders such as NODES or SVC
// count as whole words, without character n-grams). The classifier is a
// multinomial logistic regression with L2, trained by SGD in a fixed order
// (a PCG generator with a fixed seed shuffles each of a fixed number of
// epochs), so a run of the trainer on the same data gives the same model on
// the same CPU. A clause's binary features are scaled by 1/sqrt(n), n its
// distinct features known to the model or not, in training and in Classify
// alike: pruning changes no scale, and words the model never saw lower its
// confidence instead of being ignored.
//
// The feature vocabulary is kept in the model rather than hashed: features
// seen in fewer than MinCount training examples are pruned, and so are
// features whose quantized weights are all near zero, which keeps the
// file small without the silent collisions of a hashed space, and lets a
// test or a person read which features a model knows. Weights are stored as
// int8 with one scale per label; the file is DEFLATE-compressed.
//
// # The corpus
//
// data/corpus.txt holds templates grouped by label and data/synonyms.txt
// groups of synonyms they refer to (the syntax is at the top of each file).
// Besides per-label templates, "frames" repeat one sentence shape with each
// label's words (@w_* groups), so that the words and not the shape decide,
// and every template also gets a few samples wrapped in filler that all
// labels share (@lead, @tail: "please", "for me"). Expansion is capped per
// template and sampled with a seed taken from the template's text, so it is
// deterministic and editing one template changes no other's expansions.
//
// A model file records the SHA-256 of the data files and the trainer's
// version and options (DataFiles; the hashing lives in internal/datahash so
// that programs that only classify do not link crypto/sha256);
// TestModelIsCurrent says when to run go generate.
//
// # The honest split
//
// About 20% of the templates (chosen by a hash of the template's text) are
// held out before training: the shipped model never sees their expansions,
// and TestHeldOutAccuracy reports accuracy on them. Hyper-parameters are
// tuned, if at all, on a second hash bucket of the training templates
// (`go run ./gen -dev`), never on the held-out set.
package nlu
