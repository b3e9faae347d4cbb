// Sign in: email and password, and the two-factor code once the server asks for it. The fields
// are emptied as soon as the tokens arrive, so no credential stays in the page.
import { signIn } from "../api.js";
import { messageOf } from "../ui.js";

const $ = (id) => document.getElementById(id);
let onSignedIn = () => {};
let wired = false;

export function showSignIn(next) {
  onSignedIn = next;
  if (!wired) {
    $("login-form").addEventListener("submit", submit);
    wired = true;
  }
  $("login").hidden = false;
  $("email").focus();
}

async function submit(event) {
  event.preventDefault();
  const form = $("login-form");
  const button = form.querySelector("button[type=submit]");
  const error = $("login-error");
  error.textContent = "";
  button.disabled = true;
  button.textContent = "Signing in…";
  try {
    await signIn($("email").value.trim(), $("password").value, $("totp").value.trim());
    form.reset();
    $("totp-field").hidden = true;
    onSignedIn();
  } catch (failure) {
    if (failure.code === "MFA_REQUIRED") {
      $("totp-field").hidden = false;
      $("totp").required = true;
      error.textContent = "Enter the six-digit code from your authenticator app.";
      $("totp").focus();
    } else {
      $("password").value = "";
      error.textContent = messageOf(failure);
    }
  } finally {
    button.disabled = false;
    button.textContent = "Sign in";
  }
}
