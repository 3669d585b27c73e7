// ROUGE-1 / ROUGE-L as rouge_score computes them, and the NLTK Porter stemmer its tokenizer uses
// (Porter 1980, "An algorithm for suffix stripping", with NLTK's extensions).
#include "rouge.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Porter stemmer, following nltk/stem/porter.py (mode NLTK_EXTENSIONS) rule for rule. The word is
// edited in place: no rule makes a word longer than it was on entry (step 1b adds back at most one
// letter after removing "ed" or "ing"), so the caller's buffer of the word's length suffices.

static int is_vowel_letter(char c) {
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
}

// Porter's consonant: a letter other than a, e, i, o, u, and other than a y that follows a
// consonant. A y at the start is a consonant; every further y in a run flips the answer, which
// this walks back over instead of recursing (a token may be a long run of y's).
static int is_consonant(const char *w, size_t i) {
    size_t ys = 0;
    while (w[i] == 'y') {
        if (i == 0) return ys % 2 == 0;
        ys++;
        i--;
    }
    int consonant = !is_vowel_letter(w[i]);
    return ys % 2 ? !consonant : consonant;
}

// m in [C](VC){m}[V]: the number of vowel-to-consonant transitions in w[0..len).
static int measure(const char *w, size_t len) {
    int m = 0, prev_consonant = 1;
    for (size_t i = 0; i < len; i++) {
        int c = is_vowel_letter(w[i]) ? 0 : w[i] == 'y' ? (i == 0 ? 1 : !prev_consonant) : 1;
        if (i > 0 && !prev_consonant && c) m++;
        prev_consonant = c;
    }
    return m;
}

static int contains_vowel(const char *w, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (!is_consonant(w, i)) return 1;
    return 0;
}

// *d: ends with a double consonant.
static int ends_double_consonant(const char *w, size_t len) {
    return len >= 2 && w[len - 1] == w[len - 2] && is_consonant(w, len - 1);
}

// *o: ends consonant-vowel-consonant, the last not w, x or y; NLTK also counts a two-letter
// vowel-consonant word (without the w/x/y exclusion, as in porter.py).
static int ends_cvc(const char *w, size_t len) {
    if (len >= 3 && is_consonant(w, len - 3) && !is_consonant(w, len - 2) &&
        is_consonant(w, len - 1) && w[len - 1] != 'w' && w[len - 1] != 'x' && w[len - 1] != 'y')
        return 1;
    return len == 2 && !is_consonant(w, 0) && is_consonant(w, 1);
}

// If w[0..len) ends with suffix, sets *stem_len to the length without it.
static int ends_with(const char *w, size_t len, const char *suffix, size_t *stem_len) {
    size_t n = strlen(suffix);
    if (n > len || memcmp(w + len - n, suffix, n) != 0) return 0;
    *stem_len = len - n;
    return 1;
}

static void replace_tail(char *w, size_t *len, size_t stem_len, const char *replacement) {
    size_t n = strlen(replacement);
    memcpy(w + stem_len, replacement, n);
    *len = stem_len + n;
}

typedef enum {
    COND_NONE,
    COND_MEASURE_GT0,
    COND_MEASURE_GT1,
    COND_MEASURE_GT1_AND_S_OR_T, // -ion
    COND_LOGI,                   // NLTK keeps the l of -logi with the stem ("geo" + "logi")
} RuleCondition;

typedef struct {
    const char *suffix, *replacement;
    RuleCondition cond;
} Rule;

static int rule_condition_holds(const char *w, size_t stem_len, RuleCondition cond) {
    switch (cond) {
    case COND_NONE: return 1;
    case COND_MEASURE_GT0: return measure(w, stem_len) > 0;
    case COND_MEASURE_GT1: return measure(w, stem_len) > 1;
    case COND_MEASURE_GT1_AND_S_OR_T:
        return measure(w, stem_len) > 1 && (w[stem_len - 1] == 's' || w[stem_len - 1] == 't');
    case COND_LOGI: return measure(w, stem_len + 1) > 0;
    }
    return 0;
}

// porter.py's _apply_rule_list: the first rule whose suffix matches decides; if its condition
// fails, the word stays as it is and no later rule is tried.
static void apply_rules(char *w, size_t *len, const Rule *rules, size_t n_rules) {
    for (size_t r = 0; r < n_rules; r++) {
        size_t stem_len;
        if (!ends_with(w, *len, rules[r].suffix, &stem_len)) continue;
        if (rule_condition_holds(w, stem_len, rules[r].cond))
            replace_tail(w, len, stem_len, rules[r].replacement);
        return;
    }
}

#define N_RULES(a) (sizeof(a) / sizeof((a)[0]))

static void step1a(char *w, size_t *len) {
    size_t s;
    // NLTK: "dies" -> "die" but "flies" -> "fli".
    if (*len == 4 && ends_with(w, *len, "ies", &s)) {
        replace_tail(w, len, s, "ie");
        return;
    }
    static const Rule rules[] = {
        {"sses", "ss", COND_NONE}, {"ies", "i", COND_NONE}, {"ss", "ss", COND_NONE},
        {"s", "", COND_NONE},
    };
    apply_rules(w, len, rules, N_RULES(rules));
}

static void step1b(char *w, size_t *len) {
    size_t s;
    // NLTK: "died" -> "die" but "spied" -> "spi".
    if (ends_with(w, *len, "ied", &s)) {
        replace_tail(w, len, s, *len == 4 ? "ie" : "i");
        return;
    }
    if (ends_with(w, *len, "eed", &s)) {
        if (measure(w, s) > 0) replace_tail(w, len, s, "ee");
        return;
    }
    size_t stem = 0;
    int removed = (ends_with(w, *len, "ed", &stem) && contains_vowel(w, stem)) ||
                  (ends_with(w, *len, "ing", &stem) && contains_vowel(w, stem));
    if (!removed) return;
    *len = stem;
    if (ends_with(w, *len, "at", &s) || ends_with(w, *len, "bl", &s) ||
        ends_with(w, *len, "iz", &s)) {
        w[(*len)++] = 'e'; // -ate, -ble, -ize, to be recognised by later steps
    } else if (ends_double_consonant(w, *len)) {
        char last = w[*len - 1];
        if (last != 'l' && last != 's' && last != 'z') (*len)--; // hopp(ing) -> hop
    } else if (measure(w, *len) == 1 && ends_cvc(w, *len)) {
        w[(*len)++] = 'e'; // fil(ing) -> file
    }
}

static void step1c(char *w, size_t *len) {
    // NLTK: y -> i only after a consonant that is not the whole stem ("happy" -> "happi",
    // "enjoy" and "by" unchanged).
    size_t s;
    if (ends_with(w, *len, "y", &s) && s > 1 && is_consonant(w, s - 1)) w[s] = 'i';
}

static void step2(char *w, size_t *len) {
    size_t s;
    // NLTK applies -alli -> -al first and runs step 2 again on the result.
    if (ends_with(w, *len, "alli", &s) && measure(w, s) > 0) {
        replace_tail(w, len, s, "al");
        step2(w, len);
        return;
    }
    static const Rule rules[] = {
        {"ational", "ate", COND_MEASURE_GT0}, {"tional", "tion", COND_MEASURE_GT0},
        {"enci", "ence", COND_MEASURE_GT0},   {"anci", "ance", COND_MEASURE_GT0},
        {"izer", "ize", COND_MEASURE_GT0},    {"bli", "ble", COND_MEASURE_GT0},
        {"alli", "al", COND_MEASURE_GT0},     {"entli", "ent", COND_MEASURE_GT0},
        {"eli", "e", COND_MEASURE_GT0},       {"ousli", "ous", COND_MEASURE_GT0},
        {"ization", "ize", COND_MEASURE_GT0}, {"ation", "ate", COND_MEASURE_GT0},
        {"ator", "ate", COND_MEASURE_GT0},    {"alism", "al", COND_MEASURE_GT0},
        {"iveness", "ive", COND_MEASURE_GT0}, {"fulness", "ful", COND_MEASURE_GT0},
        {"ousness", "ous", COND_MEASURE_GT0}, {"aliti", "al", COND_MEASURE_GT0},
        {"iviti", "ive", COND_MEASURE_GT0},   {"biliti", "ble", COND_MEASURE_GT0},
        {"fulli", "ful", COND_MEASURE_GT0},   {"logi", "log", COND_LOGI},
    };
    apply_rules(w, len, rules, N_RULES(rules));
}

static void step3(char *w, size_t *len) {
    static const Rule rules[] = {
        {"icate", "ic", COND_MEASURE_GT0}, {"ative", "", COND_MEASURE_GT0},
        {"alize", "al", COND_MEASURE_GT0}, {"iciti", "ic", COND_MEASURE_GT0},
        {"ical", "ic", COND_MEASURE_GT0},  {"ful", "", COND_MEASURE_GT0},
        {"ness", "", COND_MEASURE_GT0},
    };
    apply_rules(w, len, rules, N_RULES(rules));
}

static void step4(char *w, size_t *len) {
    static const Rule rules[] = {
        {"al", "", COND_MEASURE_GT1},    {"ance", "", COND_MEASURE_GT1},
        {"ence", "", COND_MEASURE_GT1},  {"er", "", COND_MEASURE_GT1},
        {"ic", "", COND_MEASURE_GT1},    {"able", "", COND_MEASURE_GT1},
        {"ible", "", COND_MEASURE_GT1},  {"ant", "", COND_MEASURE_GT1},
        {"ement", "", COND_MEASURE_GT1}, {"ment", "", COND_MEASURE_GT1},
        {"ent", "", COND_MEASURE_GT1},   {"ion", "", COND_MEASURE_GT1_AND_S_OR_T},
        {"ou", "", COND_MEASURE_GT1},    {"ism", "", COND_MEASURE_GT1},
        {"ate", "", COND_MEASURE_GT1},   {"iti", "", COND_MEASURE_GT1},
        {"ous", "", COND_MEASURE_GT1},   {"ive", "", COND_MEASURE_GT1},
        {"ize", "", COND_MEASURE_GT1},
    };
    apply_rules(w, len, rules, N_RULES(rules));
}

static void step5a(char *w, size_t *len) {
    // Both rules share the suffix e, so (unlike apply_rules) the second is tried when the first
    // one's condition fails.
    size_t s;
    if (!ends_with(w, *len, "e", &s)) return;
    int m = measure(w, s);
    if (m > 1 || (m == 1 && !ends_cvc(w, s))) *len = s;
}

static void step5b(char *w, size_t *len) {
    size_t s;
    if (ends_with(w, *len, "ll", &s) && measure(w, *len - 1) > 1) (*len)--;
}

// NLTK's table of irregular forms, answered before any rule.
static const char *const irregular_forms[][2] = {
    {"sky", "sky"},         {"skies", "sky"},     {"dying", "die"},       {"lying", "lie"},
    {"tying", "tie"},       {"news", "news"},     {"innings", "inning"},  {"inning", "inning"},
    {"outings", "outing"},  {"outing", "outing"}, {"cannings", "canning"}, {"canning", "canning"},
    {"howe", "howe"},       {"proceed", "proceed"}, {"exceed", "exceed"}, {"succeed", "succeed"},
};

// Stems w[0..len) in place; returns the stem's length.
static size_t porter_stem_in_place(char *w, size_t len) {
    for (size_t i = 0; i < N_RULES(irregular_forms); i++) {
        const char *form = irregular_forms[i][0], *stem = irregular_forms[i][1];
        if (strlen(form) == len && memcmp(w, form, len) == 0) {
            size_t n = strlen(stem);
            memcpy(w, stem, n);
            return n;
        }
    }
    // Words of one or two letters are left alone (NLTK and Porter's own implementations).
    if (len <= 2) return len;
    step1a(w, &len);
    step1b(w, &len);
    step1c(w, &len);
    step2(w, &len);
    step3(w, &len);
    step4(w, &len);
    step5a(w, &len);
    step5b(w, &len);
    return len;
}

int porter_stem(const char *word, char *out, size_t cap) {
    size_t len = strlen(word);
    if (cap < len + 1 || len > (size_t)INT32_MAX) return -1;
    memcpy(out, word, len);
    len = porter_stem_in_place(out, len);
    out[len] = '\0';
    return (int)len;
}

// ---------------------------------------------------------------------------------------------
// Tokenizer and scores.

// The tokens of one text: NUL-terminated strings in one buffer.
typedef struct {
    char *chars;
    size_t *start; // token t is chars + start[t]
    size_t n;
} Tokens;

static void tokens_free(Tokens *t) {
    free(t->chars);
    free(t->start);
    *t = (Tokens){0};
}

static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c; }

static int is_token_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// rouge_score's tokenize(): lowercase, every run outside [a-z0-9] becomes a separator, stem tokens
// longer than 3 characters, drop empty tokens.
static int tokenize(const char *text, int use_stemmer, Tokens *t) {
    size_t len = strlen(text);
    // Each token is followed by a separator or the end, so len + 1 bytes hold them all with NULs.
    t->chars = malloc(len + 1);
    t->start = malloc((len / 2 + 1) * sizeof *t->start); // tokens are separated: <= (len+1)/2
    t->n = 0;
    if (!t->chars || !t->start) {
        tokens_free(t);
        return -1;
    }
    size_t out = 0;
    for (size_t i = 0; i < len;) {
        if (!is_token_char(ascii_lower(text[i]))) {
            i++;
            continue;
        }
        size_t begin = out;
        while (i < len && is_token_char(ascii_lower(text[i])))
            t->chars[out++] = ascii_lower(text[i++]);
        size_t n = out - begin;
        if (use_stemmer && n > 3) n = porter_stem_in_place(t->chars + begin, n);
        out = begin + n;
        t->chars[out++] = '\0';
        t->start[t->n++] = begin;
    }
    return 0;
}

typedef struct {
    const char *s;
    size_t pos; // index into the concatenation reference tokens ++ candidate tokens
} TokenRef;

static int compare_token_refs(const void *a, const void *b) {
    return strcmp(((const TokenRef *)a)->s, ((const TokenRef *)b)->s);
}

// Numbers the distinct tokens of both texts 0..*n_ids-1; ids[0..nr) are the reference's and
// ids[nr..nr+nc) the candidate's.
static int intern_tokens(const Tokens *ref, const Tokens *cand, uint32_t *ids, size_t *n_ids) {
    size_t total = ref->n + cand->n;
    *n_ids = 0;
    if (total == 0) return 0;
    TokenRef *refs = malloc(total * sizeof *refs);
    if (!refs) return -1;
    for (size_t i = 0; i < ref->n; i++) refs[i] = (TokenRef){ref->chars + ref->start[i], i};
    for (size_t i = 0; i < cand->n; i++)
        refs[ref->n + i] = (TokenRef){cand->chars + cand->start[i], ref->n + i};
    qsort(refs, total, sizeof *refs, compare_token_refs);
    uint32_t id = 0;
    for (size_t i = 0; i < total; i++) {
        if (i > 0 && strcmp(refs[i].s, refs[i - 1].s) != 0) id++;
        ids[refs[i].pos] = id;
    }
    *n_ids = (size_t)id + 1;
    free(refs);
    return 0;
}

// Length of the longest common subsequence of a[0..na) and b[0..nb), keeping one DP row over the
// shorter sequence.
static int lcs_length(const uint32_t *a, size_t na, const uint32_t *b, size_t nb, size_t *lcs) {
    if (na < nb) {
        const uint32_t *t = a;
        a = b;
        b = t;
        size_t n = na;
        na = nb;
        nb = n;
    }
    size_t *row = calloc(nb + 1, sizeof *row); // row[j] = LCS(a[0..i), b[0..j))
    if (!row) return -1;
    for (size_t i = 0; i < na; i++) {
        size_t diagonal = 0; // LCS(a[0..i-1), b[0..j-1)) before row[j] is overwritten
        for (size_t j = 1; j <= nb; j++) {
            size_t above = row[j];
            if (a[i] == b[j - 1])
                row[j] = diagonal + 1;
            else if (row[j - 1] > row[j])
                row[j] = row[j - 1];
            diagonal = above;
        }
    }
    *lcs = row[nb];
    free(row);
    return 0;
}

// rouge_score's scoring.fmeasure, operation for operation so the doubles are identical.
static double fmeasure(double precision, double recall) {
    return precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
}

int rouge_scores(const char *reference, const char *candidate, int use_stemmer,
                 RougeScore *rouge1, RougeScore *rougeL) {
    Tokens ref = {0}, cand = {0};
    uint32_t *ids = NULL;
    size_t *counts = NULL;
    int rc = -1;
    if (tokenize(reference, use_stemmer, &ref) || tokenize(candidate, use_stemmer, &cand))
        goto done;
    size_t nr = ref.n, nc = cand.n, n_ids;
    ids = malloc((nr + nc + 1) * sizeof *ids);
    if (!ids || intern_tokens(&ref, &cand, ids, &n_ids)) goto done;

    if (rouge1) {
        counts = calloc(2 * n_ids + 1, sizeof *counts); // reference counts, then candidate counts
        if (!counts) goto done;
        for (size_t i = 0; i < nr; i++) counts[ids[i]]++;
        for (size_t i = 0; i < nc; i++) counts[n_ids + ids[nr + i]]++;
        size_t overlap = 0;
        for (size_t k = 0; k < n_ids; k++)
            overlap += counts[k] < counts[n_ids + k] ? counts[k] : counts[n_ids + k];
        rouge1->precision = (double)overlap / (double)(nc > 0 ? nc : 1);
        rouge1->recall = (double)overlap / (double)(nr > 0 ? nr : 1);
        rouge1->f1 = fmeasure(rouge1->precision, rouge1->recall);
    }
    if (rougeL) {
        *rougeL = (RougeScore){0, 0, 0};
        if (nr > 0 && nc > 0) {
            size_t lcs;
            if (lcs_length(ids, nr, ids + nr, nc, &lcs)) goto done;
            rougeL->precision = (double)lcs / (double)nc;
            rougeL->recall = (double)lcs / (double)nr;
            rougeL->f1 = fmeasure(rougeL->precision, rougeL->recall);
        }
    }
    rc = 0;
done:
    tokens_free(&ref);
    tokens_free(&cand);
    free(ids);
    free(counts);
    return rc;
}
