import react from '@vitejs/plugin-react'
import { defineConfig } from 'vite'

// Django serves dist/index.html at "/" and the rest of dist/ under STATIC_URL
// ("/static/", whitenoise), so the built asset URLs start with /static/.
// `npm run dev` proxies the API to a `dziri serve` on port 8000, keeping the browser's
// Host header so that Django's CSRF origin check sees the page's own origin.
export default defineConfig({
  base: '/static/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
  },
  server: {
    proxy: {
      '/api': { target: 'http://127.0.0.1:8000', changeOrigin: false },
    },
  },
})
