//! The admission guard of pvc-backup: only the mover may use the backup service account.
