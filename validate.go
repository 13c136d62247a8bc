package notifier

// Validation of what callers pass besides destinations (see checkDest):
// names and weights.

import (
	"fmt"
	"math"

	"github.com/natsnotifier/notifier/bus"
)

// checkNames refuses an object or cmd that is not a valid name (see
// bus.ValidName).
func checkNames(object, cmd string) error {
	if !bus.ValidName(object) {
		return fmt.Errorf("%w: object %q", ErrInvalidName, object)
	}
	if !bus.ValidName(cmd) {
		return fmt.Errorf("%w: cmd %q", ErrInvalidName, cmd)
	}
	return nil
}

// checkWeight refuses a weight that is negative, NaN or infinite.
func checkWeight(w float64) error {
	if math.IsNaN(w) || math.IsInf(w, 0) || w < 0 {
		return fmt.Errorf("%w: %v", ErrInvalidWeight, w)
	}
	return nil
}
