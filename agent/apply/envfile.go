package apply

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

var plainValue = regexp.MustCompile(`^[A-Za-z0-9_./:,@%+=-]+$`)

// quoteValue quotes a variable's value so that pam_env (/etc/environment),
// systemd's EnvironmentFile= and sh all read it back the same: none of
// them expands anything inside single quotes, and double quotes are only
// used for values without the characters they treat differently.
func quoteValue(v string) (string, error) {
	switch {
	case strings.ContainsAny(v, "\n\r\x00"):
		return "", fmt.Errorf("line break in value %q", v)
	case plainValue.MatchString(v):
		return v, nil
	case !strings.ContainsAny(v, "\"\\$`"):
		return `"` + v + `"`, nil
	case !strings.Contains(v, "'"):
		return "'" + v + "'", nil
	}
	return "", fmt.Errorf("value %q holds both quote characters and one of \\ $ `", v)
}

// envLines are NAME=value lines for env, sorted by name.
func envLines(env map[string]string) ([]string, error) {
	names := slices.Sorted(maps.Keys(env))
	var ls []string
	var errs []error
	for _, n := range names {
		q, err := quoteValue(env[n])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
			continue
		}
		ls = append(ls, n+"="+q)
	}
	return ls, errors.Join(errs...)
}
