package node

// CutOffShed exports cutOffShed to the package's external tests.
const CutOffShed = cutOffShed
