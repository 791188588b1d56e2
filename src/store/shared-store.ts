/**
 * The seams of the store side. A backend implements SharedStore and
 * PathSource; decorators (validity cache, serialised and retried writes,
 * single-flight realisation, visibility waiting) wrap them; only
 * create-closure-ensurer.ts puts them together.
 */

/**
 * The Nix store the executors mount.
 *
 * Contract:
 * - `paths` are valid store path strings (callers filter with STORE_PATH_RE:
 *   one malformed argument makes Nix reject the whole batch).
 * - findInvalid: which of `paths` are not valid on the store right now. Asks
 *   no substituter and never writes. A valid path's closure is valid (Nix's
 *   invariant), so nothing below it needs checking. Rejects UNAVAILABLE when
 *   the store cannot be reached, DEADLINE_EXCEEDED or CANCELLED.
 * - copyFrom: makes `paths` and their closures valid on the store by copying
 *   them from `source`. All-or-error: on success every path is valid; on
 *   failure some may have been copied (each copied path with its closure).
 *   Rejects FAILED_PRECONDITION reason COPY_PATH_FAILED when the failure is
 *   about the paths (not in the source, closure incomplete there, bad
 *   signature); UNAVAILABLE when a store could not be used or Nix failed in a
 *   way worth retrying; DEADLINE_EXCEEDED; CANCELLED.
 *   GC roots are made before this is called, by the RootingEnsurer around
 *   the whole ensurer (src/gc), which also roots paths that are valid already.
 * - Safe to call concurrently; the backend itself does not serialise writes.
 */
export interface SharedStore {
  readonly url: string;
  findInvalid(paths: readonly string[], signal: AbortSignal): Promise<string[]>;
  copyFrom(source: PathSource, paths: readonly string[], signal: AbortSignal): Promise<void>;
}

/**
 * A substituter: somewhere store paths can be copied from.
 *
 * Contract: `provides` answers which of `paths` the source has (the path
 * itself; its closure may still be incomplete in a binary cache, which the
 * copy then reveals). Rejects UNAVAILABLE when the source cannot be asked,
 * DEADLINE_EXCEEDED, CANCELLED.
 */
export interface PathSource {
  readonly url: string;
  provides(paths: readonly string[], signal: AbortSignal): Promise<Set<string>>;
  /**
   * How a copy from this source differs from a substituter's (absent for
   * substituters). The binary cache's staging area sets both: it holds only
   * the pushed paths, not their references (those are valid on the shared
   * store already, or in the same copy), and the proxy has checked each
   * path's signature or the pusher's right to push unsigned paths itself.
   */
  readonly copyMode?: { onlyListedPaths: boolean; signaturesChecked: boolean };
}

/** What became of one path a realisation was asked for. */
export type PathOutcome =
  | { ok: true; joined: boolean }
  | {
      ok: false;
      /** True when some source could not be asked or failed in a retryable way: trying later may work. */
      transient: boolean;
      /** For a person: which sources were asked and what each said. */
      why: string;
    };

/**
 * Makes missing paths valid on the shared store from the configured sources.
 *
 * Contract: resolves with an outcome for every distinct path asked (paths no
 * source could provide are outcomes, not rejections). Rejects, for the whole
 * call, UNAVAILABLE when the shared store cannot be written or Nix keeps
 * failing, DEADLINE_EXCEEDED, or CANCELLED when `signal` aborts. Safe to call
 * concurrently.
 */
export interface Realiser {
  realise(paths: readonly string[], signal: AbortSignal): Promise<Map<string, PathOutcome>>;
}

/** Reasons (ProxyError.reason) used by the store side. */
export const Reasons = {
  PATHS_UNAVAILABLE: 'NIX_PATHS_UNAVAILABLE',
  SOURCES_UNAVAILABLE: 'NIX_SOURCES_UNAVAILABLE',
  SHARED_STORE_UNAVAILABLE: 'SHARED_STORE_UNAVAILABLE',
  SOURCE_UNAVAILABLE: 'NIX_SOURCE_UNAVAILABLE',
  COPY_PATH_FAILED: 'NIX_COPY_PATH_FAILED',
  COPY_FAILED: 'NIX_COPY_FAILED',
  NOT_VISIBLE: 'NIX_PATHS_NOT_VISIBLE',
  INVALID_STORE_PATH: 'INVALID_STORE_PATH',
  CONFIG_INVALID: 'CONFIG_INVALID',
} as const;
