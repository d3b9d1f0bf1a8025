/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// `npm run dev` proxies the API to a `baton serve` on the default address.
const api = process.env.BATON_URL ?? 'http://127.0.0.1:8787';

export default defineConfig({
  plugins: [react()],
  build: { outDir: 'dist', assetsDir: 'assets', sourcemap: false, chunkSizeWarningLimit: 600 },
  // Tests read the repository's examples/ (one level up); the dev server serves web/ only.
  server: { proxy: { '/api': { target: api, changeOrigin: false }, '/v1': { target: api, changeOrigin: false } }, fs: process.env.VITEST ? { allow: ['..'] } : undefined },
  test: { environment: 'jsdom', include: ['src/**/*.test.{ts,tsx}'] },
});
