package assistant

import "sync/atomic"

// counters are the assistant's statistics: fixed arrays of atomics, one per
// intent and language, so counting costs no lock and no map.
type counters struct {
	questions  atomic.Uint64
	automated  atomic.Uint64
	byIntent   [intentCount]atomic.Uint64
	byLanguage [languageCount]atomic.Uint64
}

func (c *counters) count(r *Reply) {
	c.questions.Add(1)
	c.byIntent[r.Intent].Add(1)
	c.byLanguage[r.Language].Add(1)
	if !r.Handoff {
		c.automated.Add(1)
	}
}

// Stats are the assistant's counters since start.
type Stats struct {
	Questions  uint64
	ByIntent   [intentCount]uint64   // indexed by Intent
	ByLanguage [languageCount]uint64 // indexed by Language
	// Automated is the questions answered without a handoff to a person;
	// AutomatedShare is Automated / Questions (0 with no questions).
	Automated      uint64
	AutomatedShare float64
}

// Stats returns the counters. They are read one by one while questions
// are being answered, so the sums may differ from Questions by the
// questions in flight.
func (a *Assistant) Stats() Stats {
	var s Stats
	s.Questions = a.stats.questions.Load()
	s.Automated = a.stats.automated.Load()
	for i := range s.ByIntent {
		s.ByIntent[i] = a.stats.byIntent[i].Load()
	}
	for i := range s.ByLanguage {
		s.ByLanguage[i] = a.stats.byLanguage[i].Load()
	}
	if s.Questions > 0 {
		s.AutomatedShare = min(1, float64(s.Automated)/float64(s.Questions))
	}
	return s
}
