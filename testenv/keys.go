package testenv

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// NKey is a user nkey: Public goes into the server's users ([User].NKey),
// SeedFile is what the client signs with (nats.NkeyOptionFromSeed).
type NKey struct {
	Public   string
	SeedFile string // mode 0600
	Seed     string // the secret, for tests that check it never leaks
}

// GenerateNKey makes a new user nkey and writes its seed to dir/name.nk.
func GenerateNKey(dir, name string) (*NKey, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("testenv: nkey: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("testenv: nkey: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("testenv: nkey: %w", err)
	}
	path := filepath.Join(dir, name+".nk")
	if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	return &NKey{Public: pub, SeedFile: path, Seed: string(seed)}, nil
}

// Operator is a NATS operator with a system account and one account holding
// one user, for a server in operator (JWT) mode ([WithOperator]). Clients
// log in with CredsFile (nats.UserCredentials).
type Operator struct {
	JWT           string // the operator's JWT, which the server trusts
	SystemAccount string // public key
	Account       string // public key of the users' account
	AccountJWT    string
	CredsFile     string // a user of Account: JWT and seed, mode 0600
	UserSeed      string // the user's seed, for tests that check it never leaks

	systemJWT string
}

// GenerateOperator makes an operator, its accounts and a user, and writes
// the user's creds file to dir/user.creds.
func GenerateOperator(dir string) (*Operator, error) {
	opKP, err := nkeys.CreateOperator()
	if err != nil {
		return nil, fmt.Errorf("testenv: operator: %w", err)
	}
	opPub, _ := opKP.PublicKey() // a created key pair has its public key
	opc := jwt.NewOperatorClaims(opPub)
	opc.Name = "testenv"
	op := &Operator{}
	if op.JWT, err = opc.Encode(opKP); err != nil {
		return nil, fmt.Errorf("testenv: operator: %w", err)
	}
	sysPub, sysJWT, _, err := newAccount(opKP, "SYS")
	if err != nil {
		return nil, err
	}
	op.SystemAccount, op.systemJWT = sysPub, sysJWT
	accPub, accJWT, accKP, err := newAccount(opKP, "APP")
	if err != nil {
		return nil, err
	}
	op.Account, op.AccountJWT = accPub, accJWT

	userKP, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("testenv: user: %w", err)
	}
	userPub, _ := userKP.PublicKey()
	uc := jwt.NewUserClaims(userPub)
	uc.Name = "user"
	uc.IssuerAccount = "" // signed by the account key itself
	userJWT, err := uc.Encode(accKP)
	if err != nil {
		return nil, fmt.Errorf("testenv: user: %w", err)
	}
	seed, _ := userKP.Seed()
	op.UserSeed = string(seed)
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	if err != nil {
		return nil, fmt.Errorf("testenv: creds: %w", err)
	}
	op.CredsFile = filepath.Join(dir, "user.creds")
	if err := os.WriteFile(op.CredsFile, creds, 0o600); err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	return op, nil
}

// newAccount makes an account signed by the operator.
func newAccount(opKP nkeys.KeyPair, name string) (pub, token string, kp nkeys.KeyPair, err error) {
	kp, err = nkeys.CreateAccount()
	if err != nil {
		return "", "", nil, fmt.Errorf("testenv: account %s: %w", name, err)
	}
	pub, _ = kp.PublicKey()
	ac := jwt.NewAccountClaims(pub)
	ac.Name = name
	token, err = ac.Encode(opKP)
	if err != nil {
		return "", "", nil, fmt.Errorf("testenv: account %s: %w", name, err)
	}
	return pub, token, kp, nil
}
