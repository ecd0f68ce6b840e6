package assistant

import (
	"slices"
	"strings"
	"testing"
)

func TestTokenize(t *testing.T) {
	for _, c := range []struct {
		text  string
		words string // the folded words and Han characters, space-separated
		marks int    // words with a Vietnamese diacritic
	}{
		{"Where is MY order?", "where is my order", 0},
		{"ĐƠN HÀNG của tôi đâu rồi", "don hang cua toi dau roi", 6},
		{"đơn hàng", "don hang", 2},
		{"Hủy đơn giúp mình nhé", "huy don giup minh nhe", 5},
		{"ừ ạ ợ ỹ", "u a o y", 4},
		{"我的order在哪", "我 的 order 在 哪", 0},
		{"订单#2s9k1，谢谢", "订 单 2s9k1 谢 谢", 0},
		{"café naïve", "cafe naive", 2},
		{"  --!!  ", "", 0},
		{"\xff\xfeok", "ok", 0},
	} {
		tk := analyze(c.text)
		var got []string
		marks := 0
		for i := range tk.tokens {
			if tk.tokens[i].kind == tokenHan {
				got = append(got, string(tk.tokens[i].han))
				continue
			}
			got = append(got, string(tk.word(i)))
			if tk.tokens[i].mark {
				marks++
			}
		}
		putTokenizer(tk)
		if strings.Join(got, " ") != c.words || marks != c.marks {
			t.Errorf("%q: tokens %q with %d marked, want %q with %d", c.text, got, marks, c.words, c.marks)
		}
	}
}

// TestFoldVietnamese checks every letter of the Vietnamese alphabet with
// every tone folds to its base letter, upper and lower case.
func TestFoldVietnamese(t *testing.T) {
	bases := map[byte]string{
		'a': "aàáảãạăằắẳẵặâầấẩẫậ", 'e': "eèéẻẽẹêềếểễệ", 'i': "iìíỉĩị", 'o': "oòóỏõọôồốổỗộơờớởỡợ",
		'u': "uùúủũụưừứửữự", 'y': "yỳýỷỹỵ", 'd': "dđ",
	}
	for base, letters := range bases {
		for _, r := range letters + strings.ToUpper(letters) {
			if c, _ := foldRune(r); c != base {
				t.Errorf("%q folds to %q, want %q", r, c, base)
			}
		}
	}
}

// TestTrainingDeterministic: the accuracy figures hold only if the same
// examples always give the same model.
func TestTrainingDeterministic(t *testing.T) {
	ex := mustExamples(t)
	a, b := train(ex), train(ex)
	if !slices.Equal(a.weights, b.weights) || a.bias != b.bias {
		t.Fatal("two trainings on the same examples differ")
	}
	la, lb := trainLang(ex), trainLang(ex)
	if !slices.Equal(la.weights, lb.weights) || la.bias != lb.bias {
		t.Fatal("two language trainings on the same examples differ")
	}
}
