// Where a paused run stands: "Paused before STEP (breakpoint|stepping)", Continue and Step
// (resume with stepping: it pauses again before the next step), and the state inspector.
import type { Debugger } from './useDebugger';
import { ErrorBanner } from '../Status';
import { StateInspector } from './StateInspector';

export function DebuggerBar({ runId, dbg, paused, seq, order, onEdited }: { runId: string; dbg: Debugger; paused: boolean; seq: number; order: string[]; onEdited(): void }) {
  if (!dbg.active) return null;
  const at = dbg.debug?.paused;
  const stoppedAt = paused && at?.reason === 'breakpoint' ? at.step : undefined;
  const userPause = paused && at?.reason === 'user';
  return (
    <>
      <ErrorBanner error={dbg.error} />
      {(stoppedAt || userPause) && (
        <div className="dbg-bar" role="region" aria-label="Debugger" data-testid="debugger-bar">
          <p className="dbg-where" role="status" data-testid="paused-at">
            {stoppedAt ? (
              <>
                Paused before <span className="mono">{stoppedAt}</span> <span className="muted">({dbg.debug?.stepping ? 'stepping' : 'breakpoint'})</span>
              </>
            ) : (
              'Paused by a person'
            )}
          </p>
          <div className="buttons">
            <button type="button" className="primary" disabled={dbg.busy} onClick={() => void dbg.resume(false)} title="Run on to the next breakpoint">
              Continue
            </button>
            <button type="button" disabled={dbg.busy} onClick={() => void dbg.resume(true)} title="Run the next step, then pause">
              Step
            </button>
          </div>
        </div>
      )}
      {paused && <StateInspector runId={runId} seq={seq} order={order} onEdited={onEdited} />}
    </>
  );
}
