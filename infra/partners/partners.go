package partners

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"rxflow/projections"
)

// Endpoints holds each partner's client Config, keyed by
// projections.Partner.Name ("insurance", "pharmacy", ...).
type Endpoints map[string]Config

// Set implements projections.Partners: one Client per partner.
type Set struct {
	clients map[string]*Client
}

// NewSet builds a client for each partner of ps from its Endpoints entry;
// every problem (a missing entry is a Config without a BaseURL) is
// reported at once, prefixed with the partner's name.
func NewSet(ps []projections.Partner, e Endpoints, httpClient *http.Client) (*Set, error) {
	s := &Set{clients: map[string]*Client{}}
	var errs []error
	for _, p := range ps {
		c, err := NewClient(e[p.Name], httpClient)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
		}
		s.clients[p.Name] = c
	}
	return s, errors.Join(errs...)
}

// Call implements projections.Partners: it posts body to p.Path with
// Client.Post, and returns its Result.Attempts. A call refused by the partner (ErrPermanent) is
// projections.ErrPartnerRefused, one still failing after every attempt
// (ErrExhausted) is projections.ErrPartnerUnavailable, both wrapping the
// *CallError; a cancelled context stays a plain, transient error. A partner
// NewSet was not given is an error of neither class.
func (s *Set) Call(ctx context.Context, p projections.Partner, key string, body any) (attempts int, err error) {
	c := s.clients[p.Name]
	if c == nil {
		return 0, fmt.Errorf("partners: no client for partner %q", p.Name)
	}
	res, err := c.Post(ctx, p.Path, key, body)
	switch {
	case errors.Is(err, ErrPermanent):
		return res.Attempts, fmt.Errorf("%w: %w", projections.ErrPartnerRefused, err)
	case errors.Is(err, ErrExhausted):
		return res.Attempts, fmt.Errorf("%w: %w", projections.ErrPartnerUnavailable, err)
	}
	return res.Attempts, err
}
