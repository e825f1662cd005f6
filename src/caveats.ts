// Runs in: the Node process (data only). The caveat codes corral reports; the native
// core's list (schema/caveats.json, with what each means and how to fix it) is the source,
// and a test holds this copy to it.

/** Every caveat code, in the order of docs/errors.md. */
export const CAVEAT_CODES = [
  'HOST_NETWORK',
  'LANDLOCK_UNAVAILABLE',
  'LANDLOCK_NO_REFER',
  'LANDLOCK_NO_TRUNCATE',
  'LANDLOCK_NO_NET',
  'LANDLOCK_NO_IOCTL',
  'LANDLOCK_NO_SCOPE',
  'SECCOMP_UNAVAILABLE',
  'MEMORY_PER_PROCESS',
  'PIDS_BY_RLIMIT',
  'PIDS_UNENFORCED_FOR_ROOT',
  'CPU_SHARE_UNENFORCED',
  'DISK_LIMIT_UNENFORCED',
  'CAPTURE_FILE_READONLY',
  'OVERLAY_SUBMOUNTS',
  'RULE_UNMATCHED',
  'NOT_RESERVED',
  'DENIED_FILE_HAS_LINKS',
  'PROTECTED_FILE_HAS_LINKS',
  'MEMFD_EXEC',
  'UNIX_SOCKETS_UNGATED',
  'LISTEN_UNCHECKED',
  'UNIX_SOCKETS_IN_WRITABLE_PATHS',
  'ROOT_IDENTITY',
  'IDMAP_UNSUPPORTED',
  'NO_MOUNT_VIEW',
  'NO_BIND_REMAP',
  'TMP_RELOCATED',
  'NO_PRIVATE_TMP',
  'NO_PRIVATE_DEVPTS',
  'NO_PRIVATE_LOOPBACK',
  'NO_PID_NAMESPACE',
  'NO_IPC_NAMESPACE',
  'NO_UTS_NAMESPACE',
  'NO_SECCOMP',
  'NO_RLIMIT_NPROC_ISOLATION',
  'NO_MEMORY_LIMIT',
] as const;

/** A guarantee a host may be unable to give (see `Caveat`). */
export type CaveatCode = (typeof CAVEAT_CODES)[number];
