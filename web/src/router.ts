// The app's few routes, on the History API (the server answers index.html for every app path,
// so a reload or a shared link opens the same page).
import { useEffect, useState } from 'react';

export type Route =
  | { page: 'dashboard' }
  | { page: 'run'; id: string }
  | { page: 'approvals' }
  | { page: 'workflows' }
  | { page: 'builder'; name?: string }
  | { page: 'agents' }
  | { page: 'agent'; name: string }
  | { page: 'admin-keys' }
  | { page: 'admin-webhooks' }
  | { page: 'admin-audit' }
  | { page: 'compare'; a: string; b: string }
  | { page: 'missing'; path: string };

export function parseRoute(path: string): Route {
  const p = path.replace(/\/+$/, '') || '/';
  if (p === '/') return { page: 'dashboard' };
  if (p === '/approvals') return { page: 'approvals' };
  if (p === '/workflows') return { page: 'workflows' };
  if (p === '/builder') return { page: 'builder' };
  if (p === '/agents') return { page: 'agents' };
  const agent = /^\/agents\/([A-Za-z0-9_.-]{1,200})$/.exec(p);
  if (agent) return { page: 'agent', name: agent[1] };
  if (p === '/admin/keys') return { page: 'admin-keys' };
  if (p === '/admin/webhooks') return { page: 'admin-webhooks' };
  if (p === '/admin/audit') return { page: 'admin-audit' };
  const open = /^\/builder\/([A-Za-z0-9_.@-]{1,200})$/.exec(p);
  if (open) return { page: 'builder', name: open[1] };
  const run = /^\/runs\/([0-9a-f]{4,32})$/.exec(p);
  if (run) return { page: 'run', id: run[1] };
  const compare = /^\/compare\/([0-9a-f]{4,32})\/([0-9a-f]{4,32})$/.exec(p);
  if (compare) return { page: 'compare', a: compare[1], b: compare[2] };
  return { page: 'missing', path: p };
}

export function navigate(to: string) {
  if (to === window.location.pathname) return;
  window.history.pushState(null, '', to);
  window.dispatchEvent(new PopStateEvent('popstate'));
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.pathname));
  useEffect(() => {
    const on = () => setRoute(parseRoute(window.location.pathname));
    window.addEventListener('popstate', on);
    return () => window.removeEventListener('popstate', on);
  }, []);
  return route;
}

/** A link that navigates without reloading (and still opens in a new tab with a modifier). */
export function onLink(e: React.MouseEvent<HTMLAnchorElement>) {
  if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(e.currentTarget.getAttribute('href') ?? '/');
}
