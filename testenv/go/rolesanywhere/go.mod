// Wrapper module that builds AWS's IAM Roles Anywhere credential helper (aws_signing_helper) with
// pinned dependencies (go.sum): the independent client the STS emulator's CreateSession is checked
// against. Its go line repeats the helper's own, so the build keeps the helper's GODEBUG defaults.
module podcreds.dev/testenv/rolesanywhere

go 1.22.5

require github.com/aws/rolesanywhere-credential-helper v1.4.0

require (
	github.com/aws/aws-sdk-go v1.55.5 // indirect
	github.com/google/go-tpm v0.3.3 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/jmespath/go-jmespath v0.4.0 // indirect
	github.com/miekg/pkcs11 v1.1.1 // indirect
	github.com/spf13/cobra v1.8.1 // indirect
	github.com/spf13/pflag v1.0.5 // indirect
	github.com/stefanberger/go-pkcs11uri v0.0.0-20230803200340-78284954bff6 // indirect
	golang.org/x/crypto v0.28.0 // indirect
	golang.org/x/net v0.30.0 // indirect
	golang.org/x/sys v0.26.0 // indirect
	golang.org/x/term v0.25.0 // indirect
)
