// How long a running step has been running, ticking once a second on its own (the details
// panel around it does not re-render).
import { useEffect, useState } from 'react';
import { duration } from '../../lib/preview';

export function Elapsed({ since }: { since: number }) {
  const [now, setNow] = useState(Date.now);
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  return <span data-testid="elapsed">running for {duration(Math.max(0, Math.floor((now - since) / 1000) * 1000))}</span>;
}
