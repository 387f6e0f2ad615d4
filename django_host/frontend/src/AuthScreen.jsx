import { useState } from 'react'
import { api, describeError } from './api.js'

export default function AuthScreen({ notice, onAuthenticated }) {
  const [mode, setMode] = useState('login') // or 'register'
  const [username, setUsername] = useState('')
  const [email, setEmail] = useState('')
  const [password, setPassword] = useState('')
  const [error, setError] = useState(null)
  const [busy, setBusy] = useState(false)
  const registering = mode === 'register'

  async function submit(event) {
    event.preventDefault()
    setBusy(true)
    setError(null)
    try {
      const user = registering
        ? await api.register(username.trim(), email.trim(), password)
        : await api.login(username.trim(), password)
      onAuthenticated(user)
    } catch (failure) {
      setError(describeError(failure))
      setBusy(false)
    }
  }

  function switchMode() {
    setMode(registering ? 'login' : 'register')
    setError(null)
  }

  const title = registering ? 'Create your account' : 'Log in'
  return (
    <main className="center-screen">
      <div className="card auth-card">
        <h1 className="brand">dziri</h1>
        <p className="tagline" dir="auto">
          A chatbot that understands Darija — <bdi lang="ar">واش راك؟</bdi> wach rak?
        </p>
        {notice && (
          <p className="notice" role="status">
            {notice}
          </p>
        )}
        <form onSubmit={submit} aria-label={title} noValidate={false}>
          <h2>{title}</h2>
          <label>
            Username
            <input
              name="username"
              autoComplete="username"
              value={username}
              onChange={(e) => setUsername(e.target.value)}
              required
              minLength={3}
              maxLength={40}
              autoFocus
            />
          </label>
          {registering && (
            <label>
              Email
              <input
                name="email"
                type="email"
                autoComplete="email"
                value={email}
                onChange={(e) => setEmail(e.target.value)}
                required
                maxLength={254}
              />
            </label>
          )}
          <label>
            Password
            <input
              name="password"
              type="password"
              autoComplete={registering ? 'new-password' : 'current-password'}
              value={password}
              onChange={(e) => setPassword(e.target.value)}
              required
              minLength={registering ? 8 : undefined}
              maxLength={128}
            />
          </label>
          {registering && <p className="hint">3–40 letters, digits, “_”, “.” or “-”; a password of at least 8 characters.</p>}
          {error && (
            <p className="error" role="alert">
              {error}
            </p>
          )}
          <button type="submit" className="primary" disabled={busy}>
            {registering ? 'Create account' : 'Log in'}
          </button>
        </form>
        <p className="switch">
          {registering ? 'Already have an account?' : 'New here?'}{' '}
          <button type="button" className="link" onClick={switchMode}>
            {registering ? 'Log in' : 'Create an account'}
          </button>
        </p>
      </div>
    </main>
  )
}
