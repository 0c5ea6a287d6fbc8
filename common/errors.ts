// Error catalogue: every error molt raises on purpose has a stable code. Code and tests match on
// `code`, never on message text.

export type MoltErrorCode =
  | 'MOLT_ERR_YAML_SYNTAX'
  | 'MOLT_ERR_VALIDATION'
  | 'MOLT_ERR_DUPLICATE_NAME'
  | 'MOLT_ERR_CONFLICT'
  | 'MOLT_ERR_NOT_FOUND'
  | 'MOLT_ERR_UNAUTHORIZED'
  | 'MOLT_ERR_BAD_REQUEST'
  | 'MOLT_ERR_DOCKER'
  | 'MOLT_ERR_PROCESS'
  | 'MOLT_ERR_NOT_READY'
  | 'MOLT_ERR_PROTOCOL'
  | 'MOLT_ERR_CONFIG_FILE'
  | 'MOLT_ERR_USAGE'
  | 'MOLT_ERR_KUBERNETES'
  | 'MOLT_ERR_INTERNAL'
  | 'MOLT_ERR_FORBIDDEN';

export interface ErrorLocation {
  file?: string;
  /** 1-based */
  line?: number;
  /** 1-based */
  column?: number;
  /** e.g. "spec.transition.mode" or "spec.docker.portBindings[0].hostPort" */
  path?: string;
}

export class MoltError extends Error {
  readonly code: MoltErrorCode;
  readonly location: ErrorLocation;
  constructor(code: MoltErrorCode, message: string, location: ErrorLocation = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MoltError';
    this.code = code;
    this.location = location;
  }

  /** "file:line:col: path: message" — the one-line form shown by the CLI, logs and status. */
  override toString(): string {
    const { file, line, column, path } = this.location;
    let where = file ?? '';
    if (file && line) where += `:${line}${column ? `:${column}` : ''}`;
    const parts = [where, path].filter(Boolean);
    return parts.length ? `${parts.join(': ')}: ${this.message}` : this.message;
  }
}

/** Several validation errors from one input (a file can hold several mistakes). */
export class MoltValidationErrors extends Error {
  readonly code = 'MOLT_ERR_VALIDATION' as const;
  readonly errors: MoltError[];
  constructor(errors: MoltError[]) {
    super(errors.map((e) => e.toString()).join('\n'));
    this.name = 'MoltValidationErrors';
    this.errors = errors;
  }
}
