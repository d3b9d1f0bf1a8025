import type { ApiError } from '../api/client';

export function StatusPill({ status }: { status: string }) {
  return <span className={`pill s-${status}`}>{status}</span>;
}

/** A failed call, said plainly (the server's own message), with what to do when there is one. */
export function ErrorBanner({ error, onRetry }: { error?: ApiError | null; onRetry?: () => void }) {
  if (!error) return null;
  return (
    <div className="banner error" role="alert">
      <span>{error.message}</span>
      {onRetry && (
        <button type="button" onClick={onRetry}>
          Retry
        </button>
      )}
    </div>
  );
}
